"""Every callback exported by ``lit_callbacks`` keeps the same contract.

A new callback is covered as soon as it is in ``lit_callbacks.__all__``; if it needs
constructor arguments (or cheaper ones for a tiny run), add them to ``CONSTRUCTOR_KWARGS``.
"""

import copy
import math
import pickle

import lightning.pytorch as L
import pytest
import torch
from _tiny import TinyModule, tiny_loader, tiny_trainer

import lit_callbacks

CONSTRUCTOR_KWARGS: dict[str, dict] = {
    "EarlyStopping": {"monitor": "val_loss"},
    "GradientMonitor": {"log_every_n_steps": 1},
    "ActivationMonitor": {"log_every_n_steps": 1},
    "Divergence": {"monitors": ("train_loss", "val_loss")},  # TinyModule's keys, so that references are kept
    "WeightPenalty": {"l1": 1e-4, "l2": 1e-4},
    "LRFinder": {"num_training_steps": 10, "plot": False},
    "Warmup": {"steps": 2},
}

CALLBACKS = sorted(
    name
    for name in lit_callbacks.__all__
    if isinstance(getattr(lit_callbacks, name), type) and issubclass(getattr(lit_callbacks, name), L.Callback)
)


def make(name: str) -> L.Callback:
    return getattr(lit_callbacks, name)(**CONSTRUCTOR_KWARGS.get(name, {}))


def assert_same_state(got, want, path="state"):
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), path
        for key in want:
            assert_same_state(got[key], want[key], f"{path}[{key!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_state(g, w, f"{path}[{i}]")
    elif isinstance(want, torch.Tensor):
        got = torch.as_tensor(got)
        assert torch.equal(got, want) or (want.isnan().all() and got.isnan().all()), path
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got), path
    else:
        assert got == want, path


def test_all_is_sorted_and_every_callback_is_covered():
    assert lit_callbacks.__all__ == sorted(lit_callbacks.__all__)
    expected = {"ActivationMonitor", "Divergence", "EarlyStopping", "GradientMonitor", "WeightInit", "WeightPenalty"}
    assert expected <= set(CALLBACKS)


@pytest.mark.parametrize("name", CALLBACKS)
def test_constructs_pickles_and_has_a_state_key(name):
    callback = make(name)
    clone = pickle.loads(pickle.dumps(callback))
    assert type(clone) is type(callback)
    assert clone.state_key == callback.state_key
    assert callback.state_key.startswith(type(callback).__qualname__)
    assert_same_state(clone.state_dict(), callback.state_dict())


@pytest.mark.parametrize("name", CALLBACKS)
def test_state_dict_round_trip(name):
    state = make(name).state_dict()
    restored = make(name)
    restored.load_state_dict(copy.deepcopy(state))
    assert_same_state(restored.state_dict(), state)


class StateAtFitStart(L.Callback):
    """Placed first, so it sees the restored state before any other callback's ``on_fit_start`` runs."""

    def __init__(self, callback: L.Callback) -> None:
        self.callback = callback
        self.state = None

    def on_fit_start(self, trainer, pl_module):
        self.state = copy.deepcopy(self.callback.state_dict())


@pytest.mark.parametrize("name", CALLBACKS)
def test_fits_checkpoints_and_resumes(name, tmp_path):
    callback = make(name)
    trainer = tiny_trainer(max_epochs=1, log_every_n_steps=1, limit_val_batches=1, callbacks=[callback])
    trainer.fit(TinyModule(), tiny_loader(), tiny_loader(samples=8))
    assert trainer.global_step > 0
    pickle.loads(pickle.dumps(callback))  # still picklable after a run

    trainer.save_checkpoint(tmp_path / "run.ckpt")
    checkpoint = torch.load(tmp_path / "run.ckpt", weights_only=False)
    saved = checkpoint["callbacks"].get(callback.state_key, {})  # Lightning leaves out empty states
    assert_same_state(saved, callback.state_dict())

    resumed = make(name)
    probe = StateAtFitStart(resumed)
    trainer = tiny_trainer(max_epochs=2, log_every_n_steps=1, limit_val_batches=1, callbacks=[probe, resumed])
    trainer.fit(TinyModule(), tiny_loader(), tiny_loader(samples=8), ckpt_path=tmp_path / "run.ckpt")
    assert_same_state(probe.state, saved)
    assert trainer.current_epoch == 2
