import functools

import lightning.pytorch as L
import pytest
import torch
from torch import nn

from lit_train.modules import Classifier
from lit_train.models import GPT, MLP
from lit_train.training.optim import Optimization, attach_optimizers, kernel_arguments, param_groups
from lit_train.training.schedules import warmup_cosine


def test_biases_and_norm_weights_get_no_weight_decay():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    decay, no_decay = param_groups(net, weight_decay=0.1)
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[2].weight)}
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 4
    (everything,) = param_groups(net, weight_decay=0.1, decay_norm_and_bias=True)
    assert len(everything["params"]) == 6


def test_tied_weights_appear_once():
    gpt = GPT(vocab_size=16, block_size=4, n_layer=1, n_head=1, n_embd=8)
    params = [p for group in param_groups(gpt, 0.1) for p in group["params"]]
    assert len(params) == len({id(p) for p in params}) == len(list(gpt.parameters()))


def _fit(optimization: Optimization, max_epochs: int = 2, batches: int = 3, **trainer_settings) -> L.Trainer:
    module = Classifier(MLP(4, 2, hidden=[]), num_classes=2)
    attach_optimizers(module, optimization)
    x, y = torch.randn(24, 4), torch.randint(0, 2, (24,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    trainer = L.Trainer(max_epochs=max_epochs, limit_train_batches=batches, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        **trainer_settings)
    trainer.fit(module, loader, loader)
    return trainer


def test_length_of_cosine_comes_from_the_run():
    trainer = _fit(Optimization(functools.partial(torch.optim.SGD, lr=1.0),
                                functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR),
                                interval="step", length_arg="T_max"))
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.T_max == 6 and trainer.lr_scheduler_configs[0].interval == "step"
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_epoch_interval_length_is_the_number_of_epochs():
    trainer = _fit(Optimization(functools.partial(torch.optim.SGD, lr=1.0),
                                functools.partial(torch.optim.lr_scheduler.LinearLR, start_factor=1.0, end_factor=0.5),
                                interval="epoch", length_arg="total_iters"), max_epochs=4)
    assert trainer.lr_scheduler_configs[0].scheduler.total_iters == 4


def test_a_length_set_by_the_user_is_kept():
    trainer = _fit(Optimization(functools.partial(torch.optim.SGD, lr=1.0),
                                functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=100),
                                interval="step", length_arg="T_max"))
    assert trainer.lr_scheduler_configs[0].scheduler.T_max == 100


def test_plateau_scheduler_gets_its_monitor():
    trainer = _fit(Optimization(functools.partial(torch.optim.SGD, lr=1.0),
                                functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=0),
                                monitor="val/loss"))
    assert trainer.lr_scheduler_configs[0].monitor == "val/loss"


def test_attach_leaves_a_module_with_its_own_optimizers_alone():
    class Own(Classifier):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    module = Own(MLP(4, 2, hidden=[]), num_classes=2)
    assert attach_optimizers(module, Optimization(functools.partial(torch.optim.Adam, lr=1.0))) is False
    assert isinstance(module.configure_optimizers(), torch.optim.SGD)


def test_warmup_cosine_curve():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = warmup_cosine(opt, total_steps=10, warmup_steps=4, start_factor=0.0, eta_min_ratio=0.1)
    lrs = []
    for _ in range(11):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert lrs[7] == pytest.approx(0.2 + 1.8 * 0.5) and lrs[10] == pytest.approx(0.2)


def test_warmup_cosine_rejects_a_warmup_as_long_as_the_run():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=r"the warmup \(10 steps\) must be shorter than the run \(10 steps\)"):
        warmup_cosine(opt, total_steps=10, warmup_steps=10)


class _Trainer:
    def __init__(self, world_size, accumulate_grad_batches):
        self.world_size, self.accumulate_grad_batches = world_size, accumulate_grad_batches


@pytest.mark.parametrize(
    ("rule", "world_size", "accumulate", "expected"),
    [("none", 8, 4, 1.0), ("linear", 2, 1, 2.0), ("linear", 2, 4, 8.0), ("sqrt", 4, 1, 2.0), ("sqrt", 1, 2, 2**0.5)],
)
def test_lr_scaling_rules_use_the_effective_batch(rule, world_size, accumulate, expected):
    optimization = Optimization(functools.partial(torch.optim.SGD, lr=0.1), scale_lr=rule, base_batch_size=64,
                                batch_size=64)
    assert optimization.lr_factor(_Trainer(world_size, accumulate)) == pytest.approx(expected)


def test_lr_scaling_applies_to_the_optimizer_and_absolute_scheduler_lrs():
    optimization = Optimization(functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9),
                                functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1),
                                interval="step", length_arg="total_steps")
    optimizer, scheduler = optimization.build(nn.Linear(2, 2), run_length=10, lr_factor=4.0)
    assert optimizer.defaults["lr"] == pytest.approx(0.4)
    assert scheduler.total_steps == 10
    assert optimizer.param_groups[0]["max_lr"] == pytest.approx(0.4)


def test_scaled_lr_is_printed_at_start_and_lands_in_the_summary(tmp_path):
    from support import FAST, read_summary, run_cli

    result = run_cli(*FAST, "optimization.scale_lr=sqrt", "trainer.accumulate_grad_batches=2", "scheduler=none",
                     "trainer.limit_train_batches=4", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lit_train: LR x1.414 by the sqrt rule (effective batch 128 / base batch 64)" in result.stderr
    summary = read_summary(tmp_path / "run")
    assert summary["effective_batch_size"] == 128
    assert summary["lr"] == pytest.approx(1e-3 * 2**0.5)


@pytest.mark.parametrize(
    ("factory", "params", "expected"),
    [
        (functools.partial(torch.optim.AdamW, lr=0.1), [torch.zeros(2)], {"fused": True}),
        (functools.partial(torch.optim.SGD, lr=0.1), [torch.zeros(2)], {"fused": True}),
        # Integer tensors have no fused kernel, and the CPU no foreach kernel: the loop.
        (functools.partial(torch.optim.AdamW, lr=0.1), [torch.zeros(2), torch.zeros(2, dtype=torch.long)], {}),
        (functools.partial(torch.optim.RMSprop, lr=0.1), [torch.zeros(2)], {}),  # no fused kernel
        (functools.partial(torch.optim.AdamW, lr=0.1, differentiable=True), [torch.zeros(2)], {}),
        (functools.partial(torch.optim.AdamW, lr=0.1, fused=False), [torch.zeros(2)], {}),  # the config's choice stands
        (functools.partial(torch.optim.AdamW, lr=0.1, foreach=True), [torch.zeros(2)], {}),
    ],
    ids=["adamw", "sgd", "integer-param", "no-fused-kernel", "differentiable", "fused-set", "foreach-set"],
)
def test_auto_kernel_is_fused_only_where_every_parameter_has_it(factory, params, expected):
    assert kernel_arguments(factory, [{"params": params}]) == expected


@pytest.mark.parametrize(("kernel", "fused"), [("auto", True), ("default", None)])
def test_the_kernel_setting_reaches_the_optimizer(kernel, fused):
    trainer = _fit(Optimization(functools.partial(torch.optim.AdamW, lr=0.01), kernel=kernel), max_epochs=1)
    assert {group["fused"] for group in trainer.optimizers[0].param_groups} == {fused}


def test_the_config_picks_the_kernel():
    from support import compose_config

    from lit_train.training.run import build_optimization

    assert build_optimization(compose_config([])).kernel == "auto"
    assert build_optimization(compose_config(["optimization.kernel=default"])).kernel == "default"


def test_auto_kernel_is_not_fused_where_lightning_clips_mixed_precision_gradients():
    # Lightning's mixed precision refuses to clip a fused optimizer's gradients: auto takes the next kernel.
    trainer = _fit(Optimization(functools.partial(torch.optim.AdamW, lr=0.01), kernel="auto"), max_epochs=1,
                   precision="bf16-mixed", gradient_clip_val=1.0)
    assert {group["fused"] for group in trainer.optimizers[0].param_groups} == {None}
