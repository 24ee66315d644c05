"""Ensemble weights tuned on a validation set, and an honest check of whether they help.

`fit_weights` finds non-negative weights (sum 1) for the mean of the models' logits by minimising the softmax
cross-entropy of the answers; `cross_validated_gain` fits them on K-1 folds of the validation set and scores
MAP@3 of tuned against equal weights on the held-out fold. Tuned weights are used when that gain is positive;
its paired bootstrap interval over the questions is reported beside it. Demanding the interval to clear 0
instead was measured and dropped: it keeps equal weights for models of unequal quality, which costs far more
than tuning on noise costs seeds of one recipe (docs/BENCHMARKS.md, bench/blend_rule.py).

`python -m mcq.infer.blend --logits a.npy b.npy --valid valid.csv` does the same on saved logits (no model runs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from mcq.core.metrics import empty_options, map3_score, mean_logits, question_ap
from mcq.core.significance import paired_bootstrap
from mcq.errors import ConfigError

L2 = 1e-4  # keeps the optimum finite when the logits separate the answers perfectly (the loss is convex)


@dataclass
class BlendReport:
    """Weights fitted on the whole validation set, the cross-validation behind the decision, and the decision."""

    models: list[str]
    fitted: list[float]
    folds: list[dict]
    map3_tuned: float
    map3_equal: float
    gain: float
    gain_low: float  # the gain's 95 % paired bootstrap interval over the questions
    gain_high: float
    use_tuned: bool
    weights: list[float]  # the weights the ensemble uses: `fitted` when use_tuned, else equal
    reason: str
    valid: str = ""
    n_questions: int = 0

    def to_json(self) -> str:
        """blend.json's text."""
        return json.dumps(asdict(self), indent=2) + "\n"


def option_mask(options: Sequence[Sequence[str]] | None, shape: tuple[int, ...]) -> np.ndarray:
    """True where an option is empty (it can never be the answer), as `rank_logits` masks it."""
    if options is None:
        return np.zeros(shape, dtype=bool)
    return empty_options(options).reshape(shape)


def blend_loss(raw: np.ndarray, stack: np.ndarray, answers: np.ndarray, empty: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(sum_m raw_m * logits_m) with empty options at -inf, and its gradient."""
    z = np.tensordot(raw, stack, axes=1)
    z = np.where(empty, -np.inf, z)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(len(answers))
    loss = -np.mean(np.log(np.maximum(p[rows, answers], 1e-300))) + L2 * float(raw @ raw)
    p[rows, answers] -= 1.0
    grad = np.einsum("qj,mqj->m", p, stack) / len(answers) + 2 * L2 * raw
    return float(loss), grad


def fit_weights(
    logits_list: Sequence[np.ndarray], answers: Sequence[int], options: Sequence[Sequence[str]] | None = None
) -> np.ndarray:
    """Non-negative weights summing to 1 for the mean of the models' logits, minimising the cross-entropy.

    The unnormalised weights also set the softmax temperature, so the fit is about ranking, not calibration."""
    stack, truth, empty = _checked(logits_list, answers, options)
    if len(stack) == 1:
        return np.ones(1)
    from scipy.optimize import minimize

    masked = np.where(empty[None], 0.0, stack)  # 0 * -inf would poison the gradient
    start = np.full(len(stack), 1.0 / len(stack))
    fit = minimize(
        blend_loss, start, args=(masked, truth, empty), jac=True, method="L-BFGS-B", bounds=[(0, None)] * len(stack)
    )
    raw = np.clip(fit.x, 0.0, None)
    return raw / raw.sum() if raw.sum() > 0 else start  # all zero: no model ranks better than chance


def _checked(logits_list, answers, options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(models x questions x options stack, answers, empty-option mask), shapes checked."""
    if not len(logits_list):
        raise ValueError("no logits to blend")
    stack = np.stack([np.asarray(x, dtype=np.float64) for x in logits_list])
    truth = np.asarray(answers, dtype=int)
    if stack.ndim != 3 or stack.shape[1] != len(truth):
        raise ValueError(f"logits of shape {stack.shape[1:]} for {len(truth)} answers")
    empty = option_mask(options, stack.shape[1:])
    if empty[np.arange(len(truth)), truth].any():
        raise ValueError("an answer points at an empty option")
    return stack, truth, empty


def fold_indices(n: int, folds: int, seed: int = 0) -> list[np.ndarray]:
    """A seeded shuffle of range(n) cut into `folds` near-equal held-out parts."""
    if not 2 <= folds <= n:
        raise ConfigError(f"--folds {folds}: need 2 to {n} folds for {n} validation questions.")
    return np.array_split(np.random.default_rng(seed).permutation(n), folds)


def cross_validated_gain(
    logits_list: Sequence[np.ndarray],
    answers: Sequence[int],
    options: Sequence[Sequence[str]] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> dict:
    """K-fold MAP@3 of tuned against equal weights inside the validation set: per fold, pooled, and the gain
    with its paired bootstrap interval over the held-out questions."""
    stack, truth, _ = _checked(logits_list, answers, options)
    opts = list(options) if options is not None else None
    tuned, equal = np.zeros(stack.shape[1:]), np.zeros(stack.shape[1:])
    named = (("tuned", tuned), ("equal", equal))
    per_fold = []
    for k, held in enumerate(fold_indices(len(truth), folds, seed)):
        fit = np.setdiff1d(np.arange(len(truth)), held)
        weights = fit_weights(list(stack[:, fit]), truth[fit].tolist(), _pick(opts, fit))
        tuned[held] = mean_logits(list(stack[:, held]), weights.tolist())
        equal[held] = mean_logits(list(stack[:, held]))
        scores = {f"map3_{name}": map3_score(x[held], truth[held].tolist(), _pick(opts, held)) for name, x in named}
        per_fold.append({"fold": k, "n": len(held), "weights": weights.tolist(), **scores})
    ap_tuned, ap_equal = (question_ap(x, truth.tolist(), opts) for x in (tuned, equal))
    boot = paired_bootstrap(ap_equal, ap_tuned, seed=seed)
    return {
        "folds": per_fold,
        "map3_tuned": float(ap_tuned.mean()),
        "map3_equal": float(ap_equal.mean()),
        "gain": boot.mean,
        "low": boot.low,
        "high": boot.high,
        "ap": {"tuned": ap_tuned, "equal": ap_equal},  # per held-out question
    }


def _pick(options: list | None, rows: np.ndarray) -> list | None:
    return None if options is None else [options[i] for i in rows]


def blend_report(
    logits_list: Sequence[np.ndarray],
    answers: Sequence[int],
    options: Sequence[Sequence[str]] | None,
    models: Sequence[str],
    folds: int = 5,
    seed: int = 0,
    valid: str = "",
) -> BlendReport:
    """Cross-validate, fit the final weights on every question, and decide: tuned only if the CV gain is > 0."""
    cv = cross_validated_gain(logits_list, answers, options, folds, seed)
    fitted = fit_weights(logits_list, answers, options).tolist()
    equal = [1.0 / len(fitted)] * len(fitted)
    use = cv["gain"] > 0
    return BlendReport(
        models=list(models),
        fitted=fitted,
        folds=cv["folds"],
        map3_tuned=cv["map3_tuned"],
        map3_equal=cv["map3_equal"],
        gain=cv["gain"],
        gain_low=cv["low"],
        gain_high=cv["high"],
        use_tuned=use,
        weights=fitted if use else equal,
        reason=decision_reason(cv["gain"], cv["low"], cv["high"], len(cv["folds"]), len(answers)),
        valid=valid,
        n_questions=len(answers),
    )


def decision_reason(gain: float, low: float, high: float, folds: int, n: int) -> str:
    """One plain sentence on why the tuned or the equal weights are used."""
    measured = f"{folds}-fold cross-validated MAP@3 gain {gain:+.4f} [95 % interval {low:+.4f}, {high:+.4f}]"
    if gain > 0:
        noise = f"beyond the noise of {n} questions" if low > 0 else f"within the noise of {n} questions"
        return f"tuned weights used: {measured} over equal weights, {noise}"
    return (
        f"equal weights kept: tuned weights did not beat them: {measured}; the fitted weights are reported but "
        "not used"
    )


def summary(report: BlendReport) -> str:
    """A few lines for the terminal."""
    fitted = ", ".join(f"{m} {w:.3f}" for m, w in zip(report.models, report.fitted))
    return (
        f"blend on {report.valid} ({report.n_questions} questions): fitted weights {fitted}\n"
        f"cross-validated MAP@3: tuned {report.map3_tuned:.4f}, equal {report.map3_equal:.4f}, "
        f"gain {report.gain:+.4f} [{report.gain_low:+.4f}, {report.gain_high:+.4f}]\n{report.reason}"
    )


def zscore(scores: np.ndarray, options: Sequence[Sequence[str]] | None = None) -> np.ndarray:
    """Each question's scores standardised over its non-empty options (mean 0, std 1; a constant row is 0), so
    members of different scales (logits, IDF mass, cosines) can share one set of weights."""
    x = np.asarray(scores, dtype=np.float64)
    empty = option_mask(options, x.shape)
    count = np.maximum((~empty).sum(axis=1, keepdims=True), 1)
    mean = np.where(empty, 0.0, x).sum(axis=1, keepdims=True) / count
    spread = np.sqrt(np.where(empty, 0.0, (x - mean) ** 2).sum(axis=1, keepdims=True) / count)
    z = np.where(spread > 1e-12, (x - mean) / np.where(spread > 1e-12, spread, 1.0), 0.0)
    return np.where(empty, 0.0, z)


@dataclass
class MemberBlend:
    """How the models' ensemble and the evidence scores are blended: weights over z-scored members, chosen on a
    validation set (recorded with the exported models as `blend`; infer.py and the kernel apply it)."""

    members: list[str]  # the first is the baseline (the models' ensemble, or one evidence score)
    weights: list[float]
    choice: str  # alone (the first member), equal, or tuned
    map3: dict[str, float]  # each member alone, equal weights, and tuned weights (cross-validated)
    gain: float  # the choice over the first member alone, with its 95 % paired bootstrap interval
    gain_low: float
    gain_high: float
    reason: str
    n_questions: int = 0
    valid: str = ""
    embedder: str = ""  # dense evidence: the embedder it was measured with
    evidence_k: int | None = None  # passages the evidence read per question (None: the models' own context)
    evidence_chars: int | None = None

    def to_meta(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, raw: dict, where: str) -> MemberBlend:
        try:
            blend = cls(**raw)
        except TypeError as err:
            raise ConfigError(
                f"{where}: its blend record does not read ({err}); re-export or pass --blend off"
            ) from err
        if len(blend.members) != len(blend.weights) or not blend.members:
            raise ConfigError(f"{where}: its blend has {len(blend.members)} members and {len(blend.weights)} weights")
        return blend

    def summary(self) -> str:
        weights = ", ".join(f"{m} {w:.3f}" for m, w in zip(self.members, self.weights))
        return f"blend ({self.choice}): {weights}"


def blend_members(members: dict[str, np.ndarray], weights: Sequence[float], options=None) -> np.ndarray:
    """The weighted sum of the z-scored members (in the order of `weights`)."""
    return mean_logits([zscore(x, options) for x in members.values()], list(weights))


def choose_blend(
    members: dict[str, np.ndarray],
    answers: Sequence[int],
    options: Sequence[Sequence[str]] | None,
    folds: int = 5,
    seed: int = 0,
    valid: str = "",
    embedder: str = "",
    evidence_context: tuple[int, int] | None = None,
) -> MemberBlend:
    """The blend of z-scored members that scores best on validation: the first member alone, equal weights, or
    weights fitted as `fit_weights` fits models' (the same rule: used only if they beat the better of the two
    fixed choices in cross-validation)."""
    names = list(members)
    z = [zscore(x, options) for x in members.values()]
    scores = {f"{name} alone": map3_score(x, answers, options) for name, x in members.items()}
    alone = [1.0] + [0.0] * (len(names) - 1)
    equal = [1.0 / len(names)] * len(names)
    cv = cross_validated_gain(z, answers, options, folds, seed)
    scores |= {"equal": cv["map3_equal"], "tuned": cv["map3_tuned"]}
    fixed = ("equal", equal) if scores["equal"] > scores[f"{names[0]} alone"] else ("alone", alone)
    best_fixed = scores["equal"] if fixed[0] == "equal" else scores[f"{names[0]} alone"]
    if scores["tuned"] > best_fixed:
        choice, weights = "tuned", fit_weights(z, answers, options).tolist()
    else:
        choice, weights = fixed
    ap_alone = question_ap(z[0], answers, options)
    ap_choice = cv["ap"][choice] if choice != "alone" else ap_alone  # tuned: held out, as it was chosen
    boot = paired_bootstrap(ap_alone, ap_choice, seed=seed)
    reason = (
        f"{choice} weights on {len(answers)} validation questions: MAP@3 "
        + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
        + f" (tuned: {folds}-fold cross-validated); gain over {names[0]} alone {boot.mean:+.4f} "
        f"[95 % interval {boot.low:+.4f}, {boot.high:+.4f}]"
    )
    k, chars = evidence_context or (None, None)
    return MemberBlend(
        names, weights, choice, scores, boot.mean, boot.low, boot.high, reason, len(answers), valid, embedder, k, chars
    )


if __name__ == "__main__":  # the command's old name, kept working: it lives in mcq.infer.blend now
    import runpy

    runpy.run_module("mcq.infer.blend", run_name="__main__", alter_sys=True)
