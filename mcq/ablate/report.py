"""The ablation's tables: ablation.json (everything), ablation.md (to read) and ablation.png (seeds per variant)."""

from __future__ import annotations

import json
from pathlib import Path

from mcq.ablate.stats import ALPHA
from mcq.io import atomic_write, atomic_write_text, library_versions


def write_ablation(root: Path, ablation: dict) -> None:
    """Write the three files into the ablation folder (atomically)."""
    ablation = {**ablation, "versions": library_versions()}
    atomic_write_text(root / "ablation.json", json.dumps(ablation, indent=2, default=str))
    atomic_write_text(root / "ablation.md", render_markdown(ablation))
    plot_variants(ablation["variants"], root / "ablation.png")


def render_markdown(ablation: dict) -> str:
    cfg = ablation["base_config"]
    lines = [
        f"# Ablation: {cfg['model']}",
        "",
        f"Base config: seeds {cfg['seeds']}, max_train {cfg['max_train']}, epochs {cfg['epochs']}, "
        f"scored on {ablation['n_valid']} questions of {cfg['valid']}. Each variant trains in its own folder under "
        f"{ablation['root']}.",
        "",
        "| variant | MAP@3 per seed | mean ± std | ensemble | blend with evidence | trainable params | train loss | "
        "phase-2 LR: top / lowest / param-weighted mean | head phase | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_variant_row(v) for v in ablation["variants"]]
    lines += [
        "",
        f"## Paired differences (b minus a; 'beyond noise': p < {ALPHA} two-sided)",
        "",
        "Per seed: the same seed of both variants, a paired t-test on the differences (seed noise = the pooled "
        "seed-to-seed std of the scores). Ensembles: a paired bootstrap over the questions (95 % interval).",
        "",
        "| b − a | per-seed differences | mean | seed noise | p | beyond noise | ensemble b − a [95 % CI] | "
        "beyond noise |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_pair_row(p) for p in ablation["pairs"]]
    lines += ["", "## Variants", ""]
    lines += [f"- **{v['name']}**: {v['about'] or '(user defined)'}; overrides {v['overrides'] or 'none'}" for v in
              ablation["variants"]]  # fmt: skip
    lines += ["", "## Versions", ""] + [f"- {k} {v}" for k, v in ablation["versions"].items()]
    return "\n".join(lines) + "\n"


def _blend(variant: dict) -> str:
    """The blend's cross-validated (tuned) or plain MAP@3 and what was chosen, e.g. '0.6100 (equal)'."""
    blend = variant.get("blend")
    if not blend:
        return "-"
    score = blend["map3"]["tuned" if blend["choice"] == "tuned" else "equal" if blend["choice"] == "equal" else
                          f"{blend['members'][0]} alone"]  # fmt: skip
    return f"{score:.4f} ({blend['choice']})"


def _variant_row(v: dict) -> str:
    seeds = ", ".join(f"{s}: {m:.4f}" for s, m in sorted(v["scores"].items(), key=lambda kv: int(kv[0])))
    lr = v["lr"]
    rates = f"{_g(lr['top'])} / {_g(lr['lowest'])} ({lr['lowest_group']}) / {_g(lr['param_weighted_mean'])}"
    head = f"{lr['head_steps']} steps at {_g(lr['head_lr'])}" if lr["head_steps"] else "none"
    params = f"{v['trainable_params']:,} of {v['total_params']:,}" if v.get("total_params") else "-"
    return (
        f"| {v['name']} | {seeds} | {v['mean']:.4f} ± {v['std']:.4f} | {_f(v['ensemble'])} | {_blend(v)} | {params} | "
        f"{_f(v['train_loss'])} | {rates} | {head} | {v['wall_s']:.0f} |"
    )


def _pair_row(p: dict) -> str:
    diffs = ", ".join(f"{d:+.4f}" for d in p["diffs"])
    ens = p.get("ensemble")
    ens_text = f"{ens['mean']:+.4f} [{ens['low']:+.4f}, {ens['high']:+.4f}]" if ens else "-"
    p_text = "-" if p["p"] is None else f"{p['p']:.3f}"
    return (
        f"| {p['b']} − {p['a']} | {diffs} | {p['mean']:+.4f} | {p['noise']:.4f} | {p_text} | "
        f"{_yes(p['exceeds_noise']) if p['p'] is not None else 'too few seeds'} | {ens_text} | "
        f"{_yes(ens['exceeds_noise']) if ens else '-'} |"
    )


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _yes(flag: bool) -> str:
    return "**yes**" if flag else "no"


def plot_variants(variants: list[dict], path: Path) -> None:
    """Each seed's MAP@3 as a dot, the mean ± std as a bar, the ensemble as a cross, one column per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(variants), 4))
    for x, v in enumerate(variants):
        scores = list(v["scores"].values())
        ax.scatter([x] * len(scores), scores, color="tab:blue", s=18, zorder=3, label="seed" if x == 0 else None)
        ax.errorbar(x + 0.12, v["mean"], yerr=v["std"], fmt="o", color="black", capsize=4,
                    label="mean ± std" if x == 0 else None)  # fmt: skip
        if v["ensemble"] is not None:
            ax.scatter([x + 0.24], [v["ensemble"]], marker="x", color="tab:red", s=40,
                       label="ensemble" if x == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(variants)), [v["name"] for v in variants])
    ax.set_ylabel("valid MAP@3")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
