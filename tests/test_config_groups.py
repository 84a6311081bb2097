"""Every option of every config group composes, validates, trains a few steps and has its effect.

Each run is checked by what it writes anyway: the logger's own files, read back with
the logger's reader; the optimizer and LR scheduler in ``last.ckpt``, held against
the configured class and settings and against the scheduler replayed for the run's
length; ``summary.json``.
"""

import csv
import inspect
import json
import logging
import math
import re
import time

import pytest
import torch
from hydra.utils import get_object
from omegaconf import OmegaConf
from support import FAST, compose_config, group_options

from lit_train.config.specs import HYDRA_KEYS, MODULES, OPTIMIZERS, SCHEDULERS
from lit_train.training.run import run
from lit_train.config.validate import validate

#: Data each model option needs.
MODEL_DATA = {"mlp": "digits", "cnn": "digits", "regressor": "regression", "gpt": "text"}
#: Options that need hardware or packages this machine may lack: composed and validated only.
NEEDS_HARDWARE = {"gpu", "fsdp", "deepspeed"}
#: Multi-process strategies: run through the CLI in test_cli_distributed.py.
MULTI_PROCESS = {"ddp", "ddp_spawn"}
SMALL_GPT = ["model.net.n_layer=1", "model.net.n_embd=32", "model.net.n_head=2", "data.block_size=16"]


#: When each scheduler steps, as its config file says: every optimizer step, or every epoch.
INTERVAL = {
    "torch.optim.lr_scheduler.CosineAnnealingLR": "step",
    "torch.optim.lr_scheduler.CosineAnnealingWarmRestarts": "step",
    "torch.optim.lr_scheduler.CyclicLR": "step",
    "torch.optim.lr_scheduler.LinearLR": "step",
    "torch.optim.lr_scheduler.OneCycleLR": "step",
    "lit_train.training.schedules.warmup_cosine": "step",
    "torch.optim.lr_scheduler.ExponentialLR": "epoch",
    "torch.optim.lr_scheduler.MultiStepLR": "epoch",
    "torch.optim.lr_scheduler.ReduceLROnPlateau": "epoch",
    "torch.optim.lr_scheduler.StepLR": "epoch",
}


#: What LR schedulers add to an optimizer's parameter groups.
SCHEDULER_KEYS = {"initial_lr", "min_lr", "max_lr"}


def _arguments(node, target) -> dict:
    """The keys of a composed ``_target_`` node that ``target``'s constructor takes, resolved."""
    parameters = inspect.signature(target).parameters
    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items()
            if k not in HYDRA_KEYS and k in parameters}


def _same(logged, configured) -> bool:
    if isinstance(configured, list):
        return list(logged) == configured
    if isinstance(configured, float):
        return logged == pytest.approx(configured)
    return logged == configured


def _configured_lr(cfg, checkpoint: dict) -> float:
    """The optimizer's LR before any schedule: the configured one, or the suggestion of the LR finder callback."""
    if "lr_finder" in (cfg.callbacks or {}):
        return checkpoint["optimizer_states"][0]["param_groups"][0]["initial_lr"]
    return cfg.optimizer.lr


def _check_optimizer(cfg, checkpoint: dict, summary: dict) -> None:
    """The checkpoint's optimizer is the configured class with the configured settings, and decays only matrices."""
    target = get_object(cfg.optimizer._target_)
    arguments = _arguments(cfg.optimizer, target)
    param = torch.zeros(2, 2, requires_grad=True)
    fresh = target([param], **arguments)
    param.grad = torch.ones_like(param)
    fresh.step()  # some add settings at their first step (LAMB's step count)
    (state,) = checkpoint["optimizer_states"]
    groups = state["param_groups"]
    for group in groups:
        # Each optimizer class has its own set of settings in a parameter group.
        assert set(group) - {"params"} - SCHEDULER_KEYS == set(fresh.param_groups[0]) - {"params"}
        for key, value in arguments.items():
            if key == "lr":  # the LR before the scheduler changed it (cyclic schedules set their own)
                if not {"max_lr", "base_lr"} & set(cfg.scheduler or {}):
                    assert group.get("initial_lr", group["lr"]) == pytest.approx(_configured_lr(cfg, checkpoint))
            elif key != "weight_decay":
                assert _same(group[key], value), (key, group[key], value)
    # The LR monitor names the optimizer's class.
    if (cfg.callbacks or {}).get("lr_monitor") is not None and cfg.logger.get("_target_") is not None:
        assert any(key.startswith(f"lr-{target.__name__}/") for key in summary["final_metrics"]), summary["final_metrics"]
    # Weight decay for weight matrices only, not for biases and norm weights (vectors): the parameters'
    # shapes are those of their state tensors (Adam's exp_avg, Adagrad's sum, ...).
    decay = arguments.get("weight_decay", 0.0)
    if decay > 0:
        shapes = {index: max((t for t in s.values() if torch.is_tensor(t)), key=lambda t: t.ndim).ndim
                  for index, s in state["state"].items()}
        assert sorted(shapes) == sorted(i for g in groups for i in g["params"])
        for group in groups:
            expected = [decay if shapes[i] >= 2 else 0.0 for i in group["params"]]
            assert [group["weight_decay"]] * len(group["params"]) == pytest.approx(expected)
        assert {shapes[i] >= 2 for i in groups[0]["params"]} == {True}
        assert {shapes[i] >= 2 for i in groups[1]["params"]} == {False}


def _check_scheduler(cfg, checkpoint: dict, summary: dict) -> None:
    """The checkpoint's scheduler is the configured one, as long as the run, stepped at its interval."""
    target_name = cfg.scheduler.get("_target_")
    if target_name is None:
        assert checkpoint["lr_schedulers"] == []
        return
    target = get_object(target_name)
    (state,) = checkpoint["lr_schedulers"]
    steps, epochs = summary["global_step"], summary["epoch"]
    arguments = _arguments(cfg.scheduler, target)
    length_arg = SCHEDULERS[target_name].length_arg
    if length_arg is not None and length_arg not in arguments:
        # The run's length in the scheduler's unit; this run's steps fill whole epochs up to max_epochs.
        arguments[length_arg] = steps if INTERVAL[target_name] == "step" else cfg.trainer.max_epochs
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=_configured_lr(cfg, checkpoint))
    replay = target(optimizer, **arguments)
    # Where the schedule starts: the optimizer's LR, or one the schedule derives (cyclic and one-cycle).
    initial = [g.get("initial_lr") for g in checkpoint["optimizer_states"][0]["param_groups"]]
    assert initial == pytest.approx([optimizer.param_groups[0].get("initial_lr")] * len(initial))
    assert set(state) == set(replay.state_dict())
    for key, value in arguments.items():
        if key in state and not isinstance(value, list):
            assert _same(state[key], value), (key, state[key], value)
    if target_name.endswith("ReduceLROnPlateau"):
        assert state["last_epoch"] == epochs  # stepped once per epoch, on the monitored metric
        return
    for _ in range(steps if INTERVAL[target_name] == "step" else epochs):
        replay.step()
    assert state["last_epoch"] == replay.last_epoch
    assert state["_last_lr"] == pytest.approx(replay.get_last_lr() * len(state["_last_lr"]), abs=1e-12)
    lrs = [g["lr"] for g in checkpoint["optimizer_states"][0]["param_groups"]]
    assert lrs == pytest.approx(state["_last_lr"], abs=1e-12)


def _last_loss(summary: dict) -> float:
    return summary["final_metrics"]["train/loss_step"]


#: What each logger option writes: the CSV logger's metrics.csv, TensorBoard's event file, ...
LOGGER_OPTIONS = {"csv": "ResumableCSVLogger", "tensorboard": "SingleFileTensorBoardLogger", "mlflow": "MLFlowLogger",
                  "wandb": "WandbLogger", "none": ""}
#: What the names of optimizer options promise.
OPTIMIZER_OPTIONS = {
    "adagrad": ("Adagrad", {}), "adam": ("Adam", {}), "adamw": ("AdamW", {}), "lamb": ("Lamb", {}),
    "momentum": ("SGD", {"momentum": 0.9, "nesterov": False}), "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "rmsprop": ("RMSprop", {}), "sgd": ("SGD", {"momentum": 0}),
}


def _check_logger(cfg, option: str, run_dir, summary: dict) -> None:
    """The logger wrote its own files, which its reader reads back with the run's last training loss, and no one else's."""
    target = cfg.logger.get("_target_") if cfg.get("logger") is not None else None
    # Lightning's fast_dev_run logs nothing.
    name = "" if cfg.trainer.fast_dev_run else LOGGER_OPTIONS[option]
    metrics_csv, events = run_dir / "metrics.csv", sorted(run_dir.glob("events.out.tfevents.*"))
    assert metrics_csv.exists() == (name == "ResumableCSVLogger")
    assert len(events) == (name == "SingleFileTensorBoardLogger")
    assert (run_dir / "wandb").exists() == (name == "WandbLogger")
    assert (run_dir.parent / "mlflow.db").exists() == (name == "MLFlowLogger")
    if name == "ResumableCSVLogger":
        with metrics_csv.open(newline="") as f:
            losses = [(int(r["step"]), float(r["train/loss_step"])) for r in csv.DictReader(f) if r["train/loss_step"]]
        assert [step for step, _ in losses] == list(range(summary["global_step"]))
        assert losses[-1][1] == pytest.approx(_last_loss(summary))
    elif name == "SingleFileTensorBoardLogger":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        reader = EventAccumulator(str(events[0]))
        reader.Reload()
        losses = reader.Scalars("train/loss_step")
        assert [e.step for e in losses] == list(range(summary["global_step"]))
        assert losses[-1].value == pytest.approx(_last_loss(summary))
        assert "test/loss" in reader.Tags()["scalars"]  # fit and test in one file
    elif name == "MLFlowLogger":
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{run_dir.parent / 'mlflow.db'}")
        (found,) = client.search_runs([client.get_experiment_by_name("lit_train").experiment_id],
                                      filter_string=f"tags.run_dir = '{run_dir}'")
        losses = client.get_metric_history(found.info.run_id, "train/loss_step")
        assert [m.step for m in losses] == list(range(summary["global_step"]))
        assert losses[-1].value == pytest.approx(_last_loss(summary))
    elif name == "WandbLogger":
        import wandb

        wandb.finish()  # what the end of a CLI process does; wandb's service writes the records soon after
        (record_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
        deadline = time.monotonic() + 30
        while b"train/loss_step" not in record_file.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.1)
        # History items in the offline record log: the key, then the value as JSON in field 16 (tag 0x82 0x01).
        data = record_file.read_bytes()
        values = [json.loads(data[m.end():m.end() + m.group(1)[0]])
                  for m in re.finditer(rb"train/loss_step\x82\x01(.)", data, re.DOTALL)]
        assert values and values[-1] == pytest.approx(_last_loss(summary))
    else:
        assert target is None or cfg.trainer.fast_dev_run, target


def _check_effects(cfg, run_dir, logger: str = "csv", optimizer: str = "adamw") -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    _check_optimizer(cfg, checkpoint, summary)
    _check_scheduler(cfg, checkpoint, summary)
    _check_logger(cfg, logger, run_dir, summary)
    class_name, settings = OPTIMIZER_OPTIONS[optimizer]
    for group in checkpoint["optimizer_states"][0]["param_groups"]:
        assert {key: group[key] for key in settings} == settings
    assert cfg.optimizer._target_.rsplit(".", 1)[1] == class_name
    return summary


def _overrides(group: str, option: str) -> list[str]:
    if group == "model":
        extra = SMALL_GPT if option == "gpt" else []
        return [f"model={option}", f"data={MODEL_DATA[option]}", *extra]
    if group == "data":
        model = {"digits": "mlp", "xor": "mlp", "blobs": "mlp", "regression": "regressor", "cubic": "regressor", "text": "gpt"}[option]
        return [f"data={option}", f"model={model}", *(SMALL_GPT if option == "text" else [])]
    if group == "experiment":
        return [f"experiment={option}", *(SMALL_GPT if option == "gpt_adamw_cosine" else [])]
    if group == "callbacks":
        return [f"callbacks=[default,{option}]" if option not in ("default", "none") else f"callbacks={option}"]
    return [f"{group}={option}"]


CASES = [
    (group, option)
    for group in ("model", "data", "optimizer", "scheduler", "logger", "callbacks", "debug", "experiment", "trainer")
    for option in group_options(group)
    if not (group == "trainer" and option in NEEDS_HARDWARE | MULTI_PROCESS)
]


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_trains_a_few_steps(group, option, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # logger=mlflow keeps its store where the run starts
    run_dir = tmp_path / "run"
    cfg = compose_config([*_overrides(group, option), *FAST], run_dir=run_dir)
    assert validate(cfg) == []
    metric = run(cfg)
    assert metric is None or math.isfinite(metric)
    _check_effects(cfg, run_dir, logger=option if group == "logger" else "csv",
                   optimizer=option if group == "optimizer" else cfg.optimizer._target_.rsplit(".", 1)[1].lower())


@pytest.mark.parametrize("option", sorted(NEEDS_HARDWARE | MULTI_PROCESS))
def test_hardware_trainer_options_compose(option, tmp_path):
    cfg = compose_config([f"trainer={option}"], run_dir=tmp_path)
    problems = validate(cfg)
    if option == "deepspeed" and problems:
        assert problems == ["trainer.strategy: 'deepspeed_stage_2' needs the deepspeed package (pip install deepspeed)"]
    else:
        assert problems == []
    assert cfg.trainer.strategy in {"ddp": "ddp", "ddp_spawn": "ddp_spawn", "fsdp": "fsdp", "deepspeed": "deepspeed_stage_2"}.get(option, "auto")


def test_every_yaml_target_is_in_the_registries():
    for option in group_options("optimizer"):
        assert compose_config([f"optimizer={option}"]).optimizer._target_ in OPTIMIZERS
    for option in group_options("scheduler"):
        target = compose_config([f"scheduler={option}"]).scheduler._target_
        assert target is None or target in SCHEDULERS
    for option in group_options("model"):
        assert compose_config([f"model={option}", f"data={MODEL_DATA[option]}"]).model._target_ in MODULES


def test_registry_metrics_match_the_modules():
    from lit_train import modules

    for target, spec in MODULES.items():
        assert getattr(modules, target.rsplit(".", 1)[1]).METRICS == spec.metrics


def _grad_norms(run_dir) -> list[float]:
    """The gradient monitor's global gradient norm of each step, as logged before clipping."""
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [float(r["grad_norm/total"]) for r in csv.DictReader(f) if r["grad_norm/total"]]


def _first_moments(checkpoint: dict) -> list[torch.Tensor]:
    return [s["exp_avg"] for s in checkpoint["optimizer_states"][0]["state"].values()]


def _bf16(run_dir, checkpoint, summary, output):
    assert "Using bfloat16 Automatic Mixed Precision (AMP)" in output


def _double(run_dir, checkpoint, summary, output):
    assert {t.dtype for t in checkpoint["state_dict"].values() if t.is_floating_point()} == {torch.float64}


# One AdamW step (beta1 = 0.9) leaves exp_avg = 0.1 x the clipped gradient: its global norm is 0.1 x the
# clip value when clipping by norm, and its largest entry is 0.1 x the clip value when clipping by value.
def _clipped_norm(run_dir, checkpoint, summary, output):
    assert _grad_norms(run_dir)[0] > 10 * 0.01  # clipping had work to do
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(m) for m in _first_moments(checkpoint)]))
    assert total.item() == pytest.approx(0.1 * 0.01, rel=1e-4)


def _clipped_value(run_dir, checkpoint, summary, output):
    assert _grad_norms(run_dir)[0] > 10 * 0.001
    largest = max(m.abs().max().item() for m in _first_moments(checkpoint))
    assert largest == pytest.approx(0.1 * 0.001, rel=1e-4)


def _accumulated(run_dir, checkpoint, summary, output):
    # Four batches, two per optimizer step.
    assert summary["global_step"] == checkpoint["global_step"] == 2
    assert {s["step"].item() for s in checkpoint["optimizer_states"][0]["state"].values()} == {2}


def _fused(run_dir, checkpoint, summary, output):
    assert {g["fused"] for g in checkpoint["optimizer_states"][0]["param_groups"]} == {True}


def _deterministic(run_dir, checkpoint, summary, output):
    assert torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        (["trainer.precision=bf16-mixed"], _bf16),
        (["trainer.precision=64"], _double),
        (["trainer.gradient_clip_val=0.01", "trainer.gradient_clip_algorithm=norm", "trainer.limit_train_batches=1"],
         _clipped_norm),
        (["trainer.gradient_clip_val=0.001", "trainer.gradient_clip_algorithm=value", "trainer.limit_train_batches=1"],
         _clipped_value),
        (["trainer.accumulate_grad_batches=2", "trainer.limit_train_batches=4"], _accumulated),
        (["deterministic=true"], _deterministic),
        (["+optimizer.fused=true"], _fused),
    ],
    ids=["bf16", "double", "clip-norm", "clip-value", "accumulate", "deterministic", "fused"],
)
def test_plain_trainer_keys(overrides, check, tmp_path, capfd, caplog):
    caplog.set_level(logging.INFO, logger="lightning.pytorch")
    cfg = compose_config([*FAST, *overrides], run_dir=tmp_path)
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.optimizer.betas[0] == 0.9
    assert validate(cfg) == []
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        run(cfg)
        summary = _check_effects(cfg, tmp_path)
        out, err = capfd.readouterr()
        output = out + err + caplog.text
        check(tmp_path, torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True), summary, output)
    finally:
        torch.use_deterministic_algorithms(deterministic)
