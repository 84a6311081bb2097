"""action=lr_find and action=show_schedule look at a config without training it."""

import math

import pytest
from lit_callbacks import LRFinder
from support import compose_config, read_summary

from lit_train.training import tune
from lit_train.training.run import run


@pytest.fixture
def drawn(monkeypatch):
    """The figures the run draws with ``plot_lr``, in order (each is also saved as usual)."""
    figures = []

    def plot_lr(*args, **kwargs):
        figures.append(real(*args, **kwargs))
        return figures[-1]

    real = tune.plot_lr
    monkeypatch.setattr(tune, "plot_lr", plot_lr)
    return figures


def _show_schedule(overrides, run_dir, drawn):
    """Runs action=show_schedule for 20 epochs of 20 steps; returns the plot's axes and the LRs."""
    run(compose_config(["action=show_schedule", "trainer.max_epochs=20", *overrides], run_dir=run_dir))
    (figure,) = drawn
    return figure.axes[0], read_summary(run_dir)["lr_schedule"]


#: An LR that trains the default setup (MLP, AdamW, digits) well: optimizer/adamw.yaml's, which reaches 95% test accuracy.
GOOD_LR = 1e-3


def test_lr_find_suggests_without_training(tmp_path, monkeypatch, capsys):
    figures = []
    figure = LRFinder.figure
    monkeypatch.setattr(LRFinder, "figure", lambda finder: figures.append(figure(finder)) or figures[-1])
    cfg = compose_config(["action=lr_find", "callbacks.progress_bar=null", "+callbacks=lr_finder",
                          "callbacks.lr_finder.num_training_steps=100"], run_dir=tmp_path)
    run(cfg)
    summary = read_summary(tmp_path)
    assert summary["stopped_reason"] == "lr_find" and summary["global_step"] == 0
    # Within a factor of ten of an LR known to train this setup well, though the range spans 1e-7 .. 10.
    assert GOOD_LR / 10 <= summary["lr_suggestion"] <= GOOD_LR * 10, summary["lr_suggestion"]
    printed = capsys.readouterr().out
    assert f"optimizer.lr={summary['lr_suggestion']:.4g}" in printed, printed
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert (tmp_path / "lr_finder.png").is_file()
    (drawn,) = figures
    assert drawn.axes[0].get_title() == f"LR range test: suggested lr {summary['lr_suggestion']:.3g} (steepest)"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["scheduler=cosine"], lambda step, lr0, n: lr0 * (1 + math.cos(math.pi * step / n)) / 2),
        (["scheduler=none"], lambda step, lr0, n: lr0),
        (["scheduler=step", "scheduler.step_size=2", "scheduler.gamma=0.5"], lambda step, lr0, n: lr0 * 0.5 ** (step // 40)),
        (["scheduler=none", "+callbacks=warmup", "callbacks.warmup.ratio=0.1"], lambda step, lr0, n: lr0 * min(1.0, step / 40)),
    ],
    ids=["cosine", "none", "step", "warmup"],
)
def test_show_schedule_matches_the_formula(overrides, expected, tmp_path):
    cfg = compose_config(["action=show_schedule", "trainer.max_epochs=20", *overrides], run_dir=tmp_path)
    run(cfg)
    lrs = read_summary(tmp_path)["lr_schedule"]
    assert len(lrs) == 400  # 20 epochs of 20 batches
    for step in (0, 1, 39, 40, 41, 200, 399):
        assert lrs[step] == pytest.approx(expected(step, 1e-3, 400), rel=1e-6, abs=1e-12)
    assert (tmp_path / "lr_schedule.png").is_file()


def test_warmup_from_the_cli_logs_the_warmed_lr(tmp_path):
    import csv

    cfg = compose_config(["+callbacks=warmup", "callbacks.warmup.ratio=0.25", "scheduler=none", "trainer.max_epochs=2",
                          "trainer.log_every_n_steps=1", "callbacks.progress_bar=null", "test=false"], run_dir=tmp_path)
    run(cfg)
    rows = [r for r in csv.DictReader((tmp_path / "metrics.csv").open()) if r.get("lr-AdamW/pg1")]
    lrs = [float(r["lr-AdamW/pg1"]) for r in rows]
    assert lrs[:3] == pytest.approx([0.0, 1e-4, 2e-4]) and lrs[-1] == pytest.approx(1e-3)


def test_show_schedule_names_the_scheduler_and_shades_the_warmup(tmp_path, drawn):
    axes, lrs = _show_schedule(["scheduler=cosine", "+callbacks=warmup", "callbacks.warmup.ratio=0.1"], tmp_path, drawn)
    assert axes.get_title() == "LR schedule: CosineAnnealingLR per step + 40 warmup steps"
    (warmup,) = [patch for patch in axes.patches if patch.get_label() == "warmup (40 steps)"]
    assert (warmup.get_x(), warmup.get_width()) == (0, 40)
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["learning rate", "warmup (40 steps)"]
    assert list(axes.lines[0].get_ydata()) == lrs
    assert axes.get_yscale() == "linear" and not axes.texts  # a cosine reads best on a linear axis; no note


def test_show_schedule_without_warmup_or_scheduler_shades_nothing(tmp_path, drawn):
    axes, _ = _show_schedule(["scheduler=none"], tmp_path, drawn)
    assert axes.get_title() == "LR schedule: constant (no scheduler)"
    assert not axes.patches and axes.get_legend() is None


def test_show_schedule_of_a_plateau_says_what_it_assumes_on_a_readable_log_axis(tmp_path, drawn):
    axes, lrs = _show_schedule(["scheduler=plateau"], tmp_path, drawn)
    assert axes.get_title() == "LR schedule: ReduceLROnPlateau per epoch"
    (note,) = axes.texts
    assert note.get_text().startswith("ReduceLROnPlateau: drawn as if val/loss never improves;")
    levels = sorted(set(lrs), reverse=True)
    assert levels == pytest.approx([1e-3, 1e-4, 1e-5, 1e-6])
    # A quarter of the run trains at 1e-5 or less, flat on a linear axis: the axis is logarithmic, every level labelled.
    assert axes.get_yscale() == "log"
    low, high = axes.get_ylim()
    ticks = [tick for tick in axes.get_yticks() if low <= tick <= high]
    assert ticks == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3])


@pytest.mark.parametrize(("scheduler", "log_scale"), [("cosine", True), ("plateau", False)])
def test_show_schedule_draws_the_lr_axis_as_asked(scheduler, log_scale, tmp_path, drawn):
    axes, lrs = _show_schedule([f"scheduler={scheduler}", f"schedule_log_scale={str(log_scale).lower()}"], tmp_path,
                               drawn)
    assert axes.get_yscale() == ("log" if log_scale else "linear")
    assert list(axes.lines[0].get_ydata()) == lrs
