"""The comparison report of a multirun: leaderboard rows and order, the plot, the CLI, the end-of-sweep hook."""

import csv
import json

import pytest
import yaml
from support import run_cli

from lit_train.sweep.report import (
    CSV_FILE, MARKDOWN_FILE, PLOT_FILE, find_runs, leaderboard, main, plot, write_report,
)


def _job(sweep, name, overrides, summary, curve, monitor="val/loss", mode="min"):
    """A job directory as lit_train leaves it; ``curve`` is val/loss at steps 10, 20, ..."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"monitor": monitor, "mode": mode}))
    if summary is not None:
        (job / "summary.json").write_text(json.dumps({"monitor": monitor, "mode": mode, **summary}))
    with (job / "metrics.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "step", "train/loss_step", "val/loss", "val/acc"])
        for i, value in enumerate(curve):
            writer.writerow([i, 10 * (i + 1) - 1, value + 0.05, "", ""])
            writer.writerow([i, 10 * (i + 1) - 1, "", value, 1 - value])


def _short_job(sweep, name, overrides, losses, steps_per_epoch=4):
    """A short run's job: one per-step training loss (at step 1), then per epoch the mean training and validation loss."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"monitor": "val/loss", "mode": "min"}))
    (job / "summary.json").write_text(json.dumps({"monitor": "val/loss", "mode": "min",
                                                  **_summary(min(losses), steps_per_epoch * len(losses))}))
    with (job / "metrics.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "step", "train/loss_step", "train/loss", "val/loss"])
        writer.writerow([0, 1, losses[0] + 0.3, "", ""])
        for epoch, value in enumerate(losses):
            end = steps_per_epoch * (epoch + 1) - 1
            writer.writerow([epoch, end, "", "", value])
            writer.writerow([epoch, end, "", value + 0.1, ""])


def _figure(sweep_dir):
    """The report's figure of the runs under ``sweep_dir``, as ``write_report`` draws it."""
    runs = find_runs(sweep_dir)
    figure = plot(runs, leaderboard(runs, "val/loss", "min"), sweep_dir / "redrawn.png", "val/loss", "title")
    assert figure is not None
    return figure


def _lines_by_colour(axes):
    return {line.get_color(): line for line in axes.lines}


def _summary(best, steps, status="completed", reason="max_epochs", wall=1.5):
    return {"status": status, "best_score": best, "final_monitor_value": best, "global_step": steps,
            "wall_time_s": wall, "stopped_reason": reason}


def _finding(severity, check):
    return {"check": check, "severity": severity, "step": 10, "message": "...", "fix": "..."}


@pytest.fixture
def sweep(tmp_path):
    common = ["experiment=demo"]
    record = [_finding("info", "loss_not_decreasing"), _finding("warning", "oscillation"),
               _finding("error", "divergence")]
    _job(tmp_path, "0", [*common, "optimizer.lr=0.001", "+trial.number=0"], {**_summary(0.3, 40), "health": record},
         [0.9, 0.5, 0.3, 0.35])
    _job(tmp_path, "1", [*common, "optimizer.lr=0.5", "+trial.number=1"],
         _summary(0.6, 20, "pruned", "pruned"), [0.8, 0.6])
    _job(tmp_path, "2", [*common, "optimizer.lr=0.0123456789", "+trial.number=2"], {**_summary(0.1, 40), "health": []},
         [0.7, 0.2, 0.1, 0.1])
    _job(tmp_path, "10", [*common, "optimizer.lr=9.0", "+trial.number=10"], None, [])  # died before a summary
    return tmp_path


def _rows(sweep_dir):
    with (sweep_dir / CSV_FILE).open() as f:
        return list(csv.DictReader(f))


def test_leaderboard_has_every_run_best_first(sweep):
    written = write_report(sweep)
    assert written == [sweep / PLOT_FILE, sweep / MARKDOWN_FILE, sweep / CSV_FILE]
    rows = _rows(sweep)
    assert [(r["rank"], r["run"], r["best"], r["best_step"], r["steps"], r["status"]) for r in rows] == [
        ("1", "2", "0.1", "29", "40", "completed"),
        ("2", "0", "0.3", "29", "40", "completed"),
        ("3", "1", "0.6", "19", "20", "pruned"),
        ("4", "10", "", "", "", "failed"),
    ]
    assert rows[0]["overrides"] == "experiment=demo optimizer.lr=0.0123456789"  # the sweeper's trial keys are hidden
    assert (rows[0]["wall_time_s"], rows[2]["stopped_reason"]) == ("1.5", "pruned")
    # The worst problem of each run's health record and how many more (info is no problem); none without a record.
    assert [r["health"] for r in rows] == ["ok", "divergence +1", "", ""]
    markdown = (sweep / MARKDOWN_FILE).read_text().splitlines()
    assert markdown[2] == "Every run: `experiment=demo`"
    assert markdown[4] == ("| # | run | overrides | best val/loss (min) | at step | steps | wall time (s) | status "
                           "| stopped | health |")
    assert markdown[6] == ("| 1 | 2 | `optimizer.lr=0.0123456789` | 0.1 | 29 | 40 | 1.5 | completed | max_epochs "
                           "| ok |")
    assert len(markdown) == 10
    assert (sweep / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_metric_to_maximize_sorts_the_other_way(tmp_path):
    for name, best in (("0", 0.9), ("1", 0.95), ("2", 0.5)):
        _job(tmp_path, name, [f"seed={name}"], _summary(best, 10), [1 - best], monitor="val/acc", mode="max")
    write_report(tmp_path)
    assert [(r["run"], r["best"]) for r in _rows(tmp_path)] == [("1", "0.95"), ("0", "0.9"), ("2", "0.5")]
    assert "best val/acc (max)" in (tmp_path / MARKDOWN_FILE).read_text()


def test_runs_are_found_in_job_order_with_their_curves(sweep):
    runs = find_runs(sweep)
    assert [run.name for run in runs] == ["0", "1", "2", "10"]
    assert runs[0].curves["val/loss"] == [(9, 0.9), (19, 0.5), (29, 0.3), (39, 0.35)]
    assert runs[0].overrides == ["experiment=demo", "optimizer.lr=0.001"]


def test_command_line(sweep, tmp_path, capsys):
    assert main([str(sweep)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(sweep / PLOT_FILE), str(sweep / MARKDOWN_FILE),
                                                    str(sweep / CSV_FILE)]
    assert main([]) == 2
    assert "usage: python -m lit_train.sweep.report DIR" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 1
    assert capsys.readouterr().err == f"error: no runs under {empty} (a run is a folder with .hydra/overrides.yaml)\n"


def test_short_runs_draw_the_per_epoch_training_loss_with_a_marker_on_every_point(tmp_path):
    _short_job(tmp_path, "0", ["optimizer.lr=0.1"], [0.9, 0.6, 0.5])
    _short_job(tmp_path, "1", ["optimizer.lr=0.01"], [0.8, 0.4, 0.3])
    train, validation = _figure(tmp_path).axes
    assert (train.get_ylabel(), train.get_title(), train.get_xlabel()) == (
        "train/loss", "training loss (epoch mean)", "epoch")
    best, other = train.lines  # leaderboard order: run 1 first
    assert list(best.get_xdata()) == [1.0, 2.0, 3.0] and list(best.get_ydata()) == pytest.approx([0.9, 0.5, 0.4])
    assert list(other.get_ydata()) == pytest.approx([1.0, 0.7, 0.6])
    for axes in (train, validation):
        assert all(line.get_marker() not in ("None", "", None) and line.get_markevery() == 1 for line in axes.lines)
        ticks = [tick for tick in axes.get_xticks() if axes.get_xlim()[0] <= tick <= axes.get_xlim()[1]]
        assert ticks == [1.0, 2.0, 3.0]  # whole epochs only


def test_per_step_training_loss_stays_when_runs_logged_enough_steps(sweep):
    train = _figure(sweep).axes[0]
    assert (train.get_ylabel(), train.get_xlabel()) == ("train/loss_step", "step")
    assert list(_lines_by_colour(train)["C0"].get_xdata()) == [9, 19, 29, 39]  # run 2, the best


def test_runs_with_identical_curves_all_show(tmp_path):
    for name in ("0", "1", "2"):
        _short_job(tmp_path, name, [f"seed={name}"], [0.9, 0.6, 0.5])
    for axes in _figure(tmp_path).axes:
        assert [list(line.get_ydata()) for line in axes.lines][1:] == [list(axes.lines[0].get_ydata())] * 2
        # the same points, but each run's hollow marker has its own shape, so the one drawn last hides none
        assert len({line.get_marker() for line in axes.lines}) == 3
        assert all(line.get_markerfacecolor() == "none" for line in axes.lines)


def test_long_identical_curves_carry_markers_at_different_points(tmp_path):
    for name in ("0", "1"):
        _job(tmp_path, name, [f"seed={name}"], _summary(0.1, 400), [1.0 / (i + 1) for i in range(40)])
    for axes in _figure(tmp_path).axes:
        first, second = axes.lines
        assert list(first.get_ydata()) == list(second.get_ydata()) and len(first.get_ydata()) == 40
        assert first.get_markevery() != second.get_markevery() and first.get_marker() != second.get_marker()


@pytest.mark.slow
def test_optimizer_study_makes_the_comparison_plot_in_one_command(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli("-m", "experiment=optimizer_study", "trainer.max_epochs=3", "callbacks.progress_bar=null",
                     f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"lit_train: report of the sweep: {sweep_dir / PLOT_FILE}" in result.stdout
    rows = _rows(sweep_dir)
    assert sorted(o for r in rows for o in r["overrides"].split() if o.startswith("optimizer=")) == [
        "optimizer=adam", "optimizer=adamw", "optimizer=momentum", "optimizer=rmsprop", "optimizer=sgd"]
    bests = [float(r["best"]) for r in rows]
    assert bests == sorted(bests) and all(r["status"] == "completed" for r in rows)
    assert (sweep_dir / PLOT_FILE).stat().st_size > 20_000
    # Three short epochs log at most one per-step training loss: the panel shows each run's epoch means.
    train = _figure(sweep_dir).axes[0]
    assert (train.get_ylabel(), train.get_xlabel()) == ("train/loss", "epoch")
    assert len(train.lines) == 5
    for line in train.lines:
        assert list(line.get_xdata()) == [1.0, 2.0, 3.0] and line.get_marker() not in ("None", "", None)
