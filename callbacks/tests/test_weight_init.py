import copy
import math

import lightning.pytorch as L
import pytest
import torch
from _tiny import TinyModule, tiny_loader, tiny_trainer
from torch import nn

from lit_callbacks import WeightInit


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"scheme": "kaiming"},
            ValueError,
            r"`scheme` must be one of \('he', 'xavier', 'orthogonal', 'normal', 'zeros'\), got 'kaiming'",
        ),
        ({"distribution": "gauss"}, ValueError, r"`distribution` must be one of \('normal', 'uniform'\), got 'gauss'"),
        ({"nonlinearity": "gelu"}, ValueError, r"`nonlinearity` must be one of \('linear', .*'selu'\), got 'gelu'"),
        ({"mode": "fan_avg"}, ValueError, r"`mode` must be one of \('fan_in', 'fan_out'\), got 'fan_avg'"),
        ({"gain": 0.0}, ValueError, r"`gain` must be > 0.0, got 0.0"),
        ({"std": -0.1}, ValueError, r"`std` must be >= 0.0, got -0.1"),
        ({"bias": "zero"}, TypeError, r"`bias` must be a number, got 'zero'"),
        ({"seed": -1}, ValueError, r"`seed` must be an int >= 0, got -1"),
        ({"modules": (nn.Linear, int)}, TypeError, r"`modules` must be nn.Module subclasses or module-name patterns"),
        ({"modules": ()}, ValueError, r"`modules` must name at least one module type or pattern, got \(\)"),
    ],
)
def test_invalid_arguments_are_named_in_the_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        WeightInit(**kwargs)


def fresh_linear(fan_in: int = 256, fan_out: int = 512) -> nn.Sequential:
    return nn.Sequential(nn.Linear(fan_in, fan_out))


@pytest.mark.parametrize(
    ("kwargs", "std"),
    [
        ({"scheme": "he"}, math.sqrt(2 / 256)),
        ({"scheme": "he", "mode": "fan_out"}, math.sqrt(2 / 512)),
        ({"scheme": "he", "nonlinearity": "tanh"}, (5 / 3) / math.sqrt(256)),
        ({"scheme": "he", "gain": 3.0}, 3.0 / math.sqrt(256)),
        ({"scheme": "xavier"}, math.sqrt(2 / (256 + 512))),
        ({"scheme": "normal", "std": 0.02}, 0.02),
    ],
)
@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_schemes_draw_weights_with_the_documented_spread(kwargs, std, distribution):
    model = fresh_linear()
    WeightInit(distribution=distribution, bias=0.1, **kwargs).initialize(model, seed=0)
    weight = model[0].weight
    assert weight.std().item() == pytest.approx(std, rel=0.02)
    assert weight.mean().item() == pytest.approx(0.0, abs=0.02 * std)
    if distribution == "uniform":
        assert weight.abs().max().item() <= math.sqrt(3) * std
    assert torch.equal(model[0].bias, torch.full((512,), 0.1))


def test_orthogonal_and_zeros():
    model = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 16))
    WeightInit("orthogonal", gain=2.0, modules=("0",)).initialize(model, seed=0)
    torch.testing.assert_close(model[0].weight @ model[0].weight.T, 4.0 * torch.eye(16), atol=1e-5, rtol=0)
    before = model[1].weight.clone()
    assert not torch.equal(model[1].weight, torch.zeros(16, 16))
    WeightInit("zeros", bias=None, modules=("1",)).initialize(model, seed=0)
    assert torch.equal(model[1].weight, torch.zeros(16, 16))
    assert before.shape == model[1].weight.shape


def test_chooses_layers_by_type_and_by_name_pattern_and_leaves_the_rest():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 4), nn.LayerNorm(4))
    untouched = copy.deepcopy(model)
    names = WeightInit("zeros", modules=(nn.Conv2d, "3")).initialize(model, seed=0)
    assert names == ["0", "3"]
    assert not model[0].weight.any() and not model[3].weight.any()
    assert torch.equal(model[4].weight, untouched[4].weight)


def test_same_seed_gives_the_same_weights_and_another_seed_does_not():
    a, b, c = fresh_linear(8, 8), fresh_linear(8, 8), fresh_linear(8, 8)
    WeightInit(seed=1).initialize(a, seed=1)
    WeightInit(seed=1).initialize(b, seed=1)
    WeightInit(seed=1).initialize(c, seed=2)
    assert torch.equal(a[0].weight, b[0].weight)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_vector_weights_need_a_scheme_without_fans():
    with pytest.raises(ValueError, match=r"scheme 'he' needs weights with at least 2 dimensions, but layer '1'"):
        WeightInit(modules=(nn.LayerNorm,)).initialize(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)), seed=0)


def test_warns_when_nothing_matches():
    with pytest.warns(UserWarning, match=r"no layer with a `weight` matches modules=\(Conv3d, head\.\*\)"):
        assert WeightInit(modules=(nn.Conv3d, "head.*")).initialize(fresh_linear(2, 2), seed=0) == []


class WeightsAtTrainStart(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.weights = copy.deepcopy(pl_module.state_dict())


def test_initializes_at_fit_start_exactly_like_initialize():
    init, seen = WeightInit("xavier", bias=0.5, seed=7), WeightsAtTrainStart()
    model = TinyModule()
    tiny_trainer(max_steps=1, callbacks=[init, seen]).fit(model, tiny_loader())

    expected = TinyModule()
    WeightInit("xavier", bias=0.5).initialize(expected, seed=7)
    assert init.initialized == ["net.0", "net.2"]
    for name, value in expected.state_dict().items():
        assert torch.equal(seen.weights[name], value), name


def test_never_initializes_when_resuming_from_a_checkpoint(tmp_path):
    model = TinyModule()
    trainer = tiny_trainer(max_steps=2, callbacks=[WeightInit(seed=0)])
    trainer.fit(model, tiny_loader())
    ckpt = tmp_path / "run.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=False)["state_dict"]

    resumed_init, seen = WeightInit(seed=0), WeightsAtTrainStart()
    trainer = tiny_trainer(max_epochs=2, max_steps=3, callbacks=[resumed_init, seen])
    trainer.fit(TinyModule(), tiny_loader(), ckpt_path=ckpt)

    assert resumed_init.initialized == []
    for name, value in saved.items():
        assert torch.equal(seen.weights[name], value), name


def test_restored_state_alone_also_prevents_initialization():
    init = WeightInit(seed=0)
    init.load_state_dict({})  # state restored (old checkpoint without keys) but no ckpt_path, e.g. a custom loop
    model, seen = TinyModule(), WeightsAtTrainStart()
    before = copy.deepcopy(model.state_dict())
    tiny_trainer(max_steps=1, callbacks=[init, seen]).fit(model, tiny_loader())
    for name, value in before.items():
        assert torch.equal(seen.weights[name], value), name


def test_two_instances_have_distinct_state_keys():
    assert WeightInit("he", modules=(nn.Linear,)).state_key != WeightInit("he", modules=(nn.Conv2d,)).state_key
