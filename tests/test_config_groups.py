"""Every option of every config group composes, validates and trains a few steps."""

import math

import pytest
from support import FAST, compose_config, group_options

from lit_train.config.specs import MODULES, OPTIMIZERS, SCHEDULERS
from lit_train.training.run import run
from lit_train.config.validate import validate

#: Data each model option needs.
MODEL_DATA = {"mlp": "digits", "cnn": "digits", "regressor": "regression", "gpt": "text"}
#: Options that need hardware or packages this machine may lack: composed and validated only.
NEEDS_HARDWARE = {"gpu", "fsdp", "deepspeed"}
#: Multi-process strategies: run through the CLI in test_cli_distributed.py.
MULTI_PROCESS = {"ddp", "ddp_spawn"}
SMALL_GPT = ["model.net.n_layer=1", "model.net.n_embd=32", "model.net.n_head=2", "data.block_size=16"]


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
    cfg = compose_config([*_overrides(group, option), *FAST], run_dir=tmp_path)
    assert validate(cfg) == []
    metric = run(cfg)
    summary = (tmp_path / "summary.json").read_text()
    assert '"status": "completed"' in summary
    assert metric is None or math.isfinite(metric)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


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


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer.precision=bf16-mixed"],
        ["trainer.precision=64"],
        ["trainer.gradient_clip_val=1.0", "trainer.gradient_clip_algorithm=norm"],
        ["trainer.gradient_clip_val=0.5", "trainer.gradient_clip_algorithm=value"],
        ["trainer.accumulate_grad_batches=2", "trainer.limit_train_batches=4"],
        ["deterministic=true"],
    ],
    ids=["bf16", "double", "clip-norm", "clip-value", "accumulate", "deterministic"],
)
def test_plain_trainer_keys(overrides, tmp_path):
    cfg = compose_config([*FAST, *overrides], run_dir=tmp_path)
    assert validate(cfg) == []
    run(cfg)
    summary = (tmp_path / "summary.json").read_text()
    assert '"status": "completed"' in summary
