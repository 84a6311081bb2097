"""action=lr_find and action=show_schedule look at a config without training it."""

import math

import pytest
from support import compose_config, read_summary

from lit_train.training.run import run


def test_lr_find_suggests_without_training(tmp_path):
    cfg = compose_config(["action=lr_find", "callbacks.progress_bar=null", "+callbacks=lr_finder",
                          "callbacks.lr_finder.num_training_steps=30"], run_dir=tmp_path)
    run(cfg)
    summary = read_summary(tmp_path)
    assert summary["stopped_reason"] == "lr_find" and summary["global_step"] == 0
    assert 1e-7 < summary["lr_suggestion"] < 10
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert (tmp_path / "lr_finder.png").is_file()


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
