"""The run report: report.json (everything), report.md (to read) and lr_schedule.png (per-group LRs)."""

from __future__ import annotations

import json
from pathlib import Path

from mcq.core.metrics import chance_map3
from mcq.io import atomic_write, atomic_write_text, library_versions


def write_report(run_dir: Path, report: dict) -> None:
    """Write the three report files into the run folder (atomically)."""
    report = {**report, "versions": library_versions()}
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2, default=str))
    atomic_write_text(run_dir / "report.md", render_markdown(report))
    lr_log = next((s["lr_log"] for s in report["seeds"] if s.get("lr_log")), None)
    if lr_log:
        plot_lr_schedule(lr_log, run_dir / "lr_schedule.png")


def render_markdown(report: dict) -> str:
    """A one-page summary: scores per seed and ensemble, parameters, LR of each group, time, versions."""
    cfg = report["config"]
    lines = [
        f"# Training report: {cfg['model']}",
        "",
        f"{report['n_train']} training and {report['n_valid']} validation questions; "
        f"top LR {report['top_lr']:.4g}; wall time {_wall(report)}.",
        *_peft_line(cfg),
        "",
        "| seed | valid MAP@3 | per-epoch MAP@3 | trainable / total params | wall s |",
        "|---|---|---|---|---|",
    ]
    for s in report["seeds"]:
        epochs = ", ".join(f"{h['map3']:.4f}" for h in s.get("eval_history", [])) or "-"
        params = f"{s['trainable_params']:,} / {s['total_params']:,}" if "total_params" in s else "(earlier run)"
        lines.append(
            f"| {s['seed']} | {_fmt(s.get('valid_map3'))} | {epochs} | {params} | {_fmt(s.get('wall_s'), 0)} |"
        )
    if "ensemble_valid_map3" in report:
        lines += [
            "",
            f"**Mean-logit ensemble of {len(report['seeds'])} seeds: MAP@3 {report['ensemble_valid_map3']:.4f}** "
            f"(chance {chance_map3(report['n_options']):.4f} for {report['n_options']} options).",
        ]
    if report.get("blend"):
        blend = report["blend"]
        weights = ", ".join(f"{m} {w:.3f}" for m, w in zip(blend["members"], blend["weights"]))
        lines += ["", f"**Blend with the evidence scores ({blend['choice']}: {weights})**: {blend['reason']}."]
    groups: list[dict] = next((s["groups"] for s in report["seeds"] if s.get("groups")), [])
    if groups:
        lines += [
            "",
            f"## Peak LR per optimizer group ({cfg['layer_lr_shape']} shape)",
            "",
            "| group | LR | params |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | {lr:.3g} | {params:,} |" for name, lr, params in merge_decay_twins(groups)]
    lines += ["", "## Versions", ""] + [f"- {k} {v}" for k, v in report["versions"].items()]
    return "\n".join(lines) + "\n"


def _wall(report: dict) -> str:
    """'812s', or for a resumed run '640s in all (75s in this process)': each seed's own time is counted."""
    total, here = report.get("total_wall_s", report["wall_s"]), report["wall_s"]
    return f"{here:.0f}s" if not report.get("seeds_reused") else f"{total:.0f}s in all ({here:.0f}s in this process)"


def _peft_line(cfg: dict) -> list[str]:
    """How a LoRA run trained (its exports are merged, plain models); nothing for full fine-tuning."""
    if cfg.get("peft", "none") != "lora":
        return []
    targets = " ".join(cfg.get("lora_target_modules") or []) or "the backbone's defaults"
    return [f"LoRA r {cfg['lora_r']}, alpha {cfg['lora_alpha']} on {targets}; merged into the exported weights."]


def merge_decay_twins(groups: list[dict]) -> list[tuple[str, float, int]]:
    """One row per layer group: a group and its '.no_decay' twin share the LR, so their sizes add up."""
    rows: dict[str, list] = {}
    for g in groups:
        name = g["name"].removesuffix(".no_decay")
        rows.setdefault(name, [name, g["lr"], 0])[2] += g["params"]
    return [tuple(r) for r in rows.values()]


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot_lr_schedule(lr_log: list[dict], path: Path) -> None:
    """Draw every group's logged LR against the step (phase 2), bottom groups light, top dark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in lr_log[0] if k.startswith("lr/") and not k.endswith(".no_decay")]
    steps = [e.get("step", i) for i, e in enumerate(lr_log)]
    fig, ax = plt.subplots(figsize=(7, 4))
    cmap = plt.get_cmap("viridis")
    for i, name in enumerate(names):
        lrs = [e.get(name) for e in lr_log]  # None where a step did not log the group: drawn as a gap
        # matplotlib's stubs admit no None in the data, though plot() takes it as a missing point
        ax.plot(steps, lrs, color=cmap(i / max(1, len(names) - 1)), label=name[3:])  # type: ignore[arg-type]
    ax.set_xlabel("logged step (phase 2)")
    ax.set_ylabel("learning rate")
    ax.set_title("Per-group learning rate")
    if len(names) <= 14:
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
