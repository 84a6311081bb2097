"""The doctor's report: a few lines per finding on the console, ``doctor.json`` and ``doctor.png``."""

from pathlib import Path
from typing import Any

from lit_train.training.doctor.findings import REPORT_NAME, Report
from lit_train.training.summary import write_json_atomic

PICTURE_NAME = "doctor.png"


def format_report(report: Report, run_dir: Path) -> str:
    """The console report: the verdict, then each finding with its evidence and fix, then the skipped checks."""
    counts = ", ".join(f"{report.count(severity)} {severity}(s)" for severity in ("error", "warning", "info"))
    lines = [f"lit_train doctor: {report.verdict} ({counts})"]
    for finding in report.findings:
        lines.append(f"  {finding.severity:<7} {finding.check}: {finding.message}")
        lines.append(f"          fix: {finding.fix}")
    by_reason: dict[str, list[str]] = {}
    for skipped in report.skipped:
        by_reason.setdefault(skipped.reason, []).append(skipped.check)
    for reason, checks in by_reason.items():
        lines.append(f"  skipped {', '.join(checks)}: {reason}")
    lines.append(f"  report: {run_dir / REPORT_NAME}, {run_dir / PICTURE_NAME}")
    return "\n".join(lines)


def write_report(report: Report, run_dir: Path) -> None:
    """Writes ``doctor.json`` and ``doctor.png`` into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / REPORT_NAME, report.to_dict())
    draw(report.curves, run_dir / PICTURE_NAME)


def draw(curves: dict[str, Any], path: Path) -> None:
    """Four panels: per-layer gradient norms and activation statistics at init, the overfit curve, the LR range test."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 8), layout="constrained")
    grads, activations, overfit, lr_range = figure.subplots(2, 2).flat

    norms = curves.get("grad_norms") or {}
    grads.set_title("gradient norm per layer at init")
    if norms:
        grads.bar(range(len(norms)), [max(norm, 1e-30) for norm in norms.values()])
        grads.set_yscale("log")
        grads.set_xticks(range(len(norms)), list(norms), rotation=45, ha="right", fontsize=7)
    else:
        grads.text(0.5, 0.5, "no gradients", ha="center", transform=grads.transAxes)

    stats = curves.get("activations") or {}
    activations.set_title("layer outputs at init: mean ± std")
    if stats:
        positions = range(len(stats))
        activations.errorbar(positions, [s["mean"] for s in stats.values()], yerr=[s["std"] for s in stats.values()],
                             fmt="o", capsize=3)
        activations.axhline(0, color="grey", linewidth=0.5)
        activations.set_xticks(positions, list(stats), rotation=45, ha="right", fontsize=7)
    else:
        activations.text(0.5, 0.5, "no layer outputs", ha="center", transform=activations.transAxes)

    curve = curves.get("overfit") or {}
    overfit.set_title("one-batch overfit")
    if curve.get("loss"):
        overfit.plot(range(len(curve["loss"])), curve["loss"], label="training loss")
        overfit.set_xlabel("step")
        overfit.set_yscale("log" if min(curve["loss"]) > 0 else "linear")
        if curve["measure"] == "classification" and curve["accuracy"]:
            twin = overfit.twinx()
            steps, values = zip(*curve["accuracy"])
            twin.plot(steps, values, color="tab:green", marker=".", label="accuracy")
            twin.set_ylim(0, 1.05)
            twin.set_ylabel("batch accuracy")
        overfit.legend(loc="lower left", fontsize=8)
    else:
        overfit.text(0.5, 0.5, "not run", ha="center", transform=overfit.transAxes)

    test = curves.get("lr_range") or {}
    lr_range.set_title("LR range test")
    if test.get("lrs"):
        lr_range.plot(test["lrs"], test["losses"])
        lr_range.set_xscale("log")
        lr_range.set_xlabel("learning rate")
        lr_range.set_ylabel("smoothed loss")
        if test.get("suggestion") is not None:
            lr_range.axvline(test["suggestion"], color="tab:green", linestyle="--",
                             label=f"suggested {test['suggestion']:.3g}")
        if test.get("lr") is not None:
            lr_range.axvline(test["lr"], color="tab:red", label=f"configured {test['lr']:.3g}")
        lr_range.legend(fontsize=8)
    else:
        lr_range.text(0.5, 0.5, "not run", ha="center", transform=lr_range.transAxes)
    figure.savefig(path, dpi=80)
