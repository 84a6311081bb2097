"""Every private name lit_train relies on resolves on the installed versions, and is named only in _compat."""

import dataclasses
import re

import lightning.pytorch as L
import pytest
import torch
from support import ROOT

from hydra_plugins.lit_train_optuna_sweeper import _compat as sweeper_compat
from lit_train import _compat


class _Tiny(L.LightningModule):
    """One linear layer trained on whatever batches come."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_hydra_private_names_resolve():
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher  # noqa: the name under test

    assert sweeper_compat.is_basic_launcher(BasicLauncher())
    assert not sweeper_compat.is_basic_launcher(object())


def test_a_failed_hydra_job_gives_its_error():
    from hydra.core.utils import JobReturn, JobStatus

    error = SystemExit(1)
    assert sweeper_compat.job_error(JobReturn(status=JobStatus.FAILED, _return_value=error)) is error


def test_lightning_rank_command_builders_resolve():
    modules = _compat.rank_command_modules()
    assert [m.__name__ for m in modules] == [
        "lightning.fabric.strategies.launchers.subprocess_script",
        "lightning.pytorch.strategies.launchers.subprocess_script",
    ]
    assert all(callable(getattr(module, _compat.RANK_COMMAND)) for module in modules)


def test_lightning_sets_the_current_hook_attribute_on_the_module():
    from lit_train.modules import Classifier, QuickHooks

    seen = []

    class Recording(Classifier):
        def __setattr__(self, name, value):
            if name == _compat.CURRENT_HOOK_ATTRIBUTE:
                seen.append(value)
            super().__setattr__(name, value)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    module = Recording(torch.nn.Linear(2, 2), num_classes=2)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=1,
                        enable_model_summary=False)
    data = torch.utils.data.TensorDataset(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=2))
    assert "training_step" in seen
    assert isinstance(module, QuickHooks)  # whose shortcut is keyed on that attribute


def test_model_checkpoint_internals_resolve():
    from lightning.pytorch.callbacks import ModelCheckpoint

    checkpoint = ModelCheckpoint(every_n_train_steps=7, save_last=True)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, callbacks=[checkpoint], max_steps=1)
    assert _compat.checkpoint_interval(checkpoint) == 7
    assert isinstance(_compat.monitor_candidates(checkpoint, trainer), dict)
    assert isinstance(_compat.should_skip_saving_checkpoint(checkpoint, trainer), bool)
    assert callable(checkpoint._save_last_checkpoint)  # noqa: the name _compat.save_last_checkpoint calls
    assert callable(checkpoint._save_topk_checkpoint)  # noqa: the name _compat.save_topk_checkpoint calls
    assert _compat.state_key(checkpoint, a=1).startswith("ModelCheckpoint{")


class RecordAtBatchEnd(L.Callback):
    """Keeps what ``read(trainer)`` says at the end of every training batch."""

    def __init__(self, read):
        self.read, self.seen = read, []

    def on_train_batch_end(self, trainer, *args):
        self.seen.append(self.read(trainer))


def test_validation_follows_the_batches_lightning_validates_after():
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(_Tiny):
        def validation_step(self, batch, batch_idx):
            pass

    data = DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=1)
    record = RecordAtBatchEnd(_compat.validation_follows)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_epochs=1,
                        val_check_interval=2, num_sanity_val_steps=0, callbacks=[record], enable_model_summary=False)
    trainer.fit(Tiny(), train_dataloaders=data, val_dataloaders=data)
    assert record.seen == [False, True, False, True]


def test_accumulating_is_true_for_the_batches_after_which_the_optimizer_does_not_step():
    record = RecordAtBatchEnd(_compat.accumulating)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        max_epochs=1, accumulate_grad_batches=2, callbacks=[record])
    trainer.fit(_Tiny(), torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(5, 1)), batch_size=1))
    assert record.seen == [True, False, True, False, False]  # the epoch's last batch steps too
    assert trainer.global_step == 3


@pytest.mark.parametrize(("every", "accumulate", "stop_at"), [(3, 1, None), (1, 1, None), (0, 1, None), (2, 2, None), (4, 1, 5)])
def test_the_training_logging_step_is_lightnings_should_update_logs(every, accumulate, stop_at):
    class Compare(L.Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == stop_at:
                trainer.should_stop = True
            self.compare(trainer)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.compare(trainer)

        def compare(self, trainer):
            self.seen.append(_compat.training_logging_step(trainer))
            assert self.seen[-1] == trainer._logger_connector.should_update_logs

    compare = Compare()
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        max_epochs=2, log_every_n_steps=every, accumulate_grad_batches=accumulate, callbacks=[compare],
                        limit_val_batches=0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(12, 1)), batch_size=1)
    trainer.fit(_Tiny(), train_dataloaders=data)
    assert (True in compare.seen) == (every > 0)


def test_a_missing_private_name_fails_loudly_with_the_installed_version():
    import hydra

    with pytest.raises(_compat.CompatError, match=(
        rf"^lit_train relies on hydra._internal.utils.no_such_name, which hydra-core {re.escape(hydra.__version__)} "
        r"does not have; install a version that lit_train's pyproject.toml allows$"
    )):
        _compat.private("hydra._internal.utils", "no_such_name")


def test_a_missing_private_attribute_fails_loudly():
    import lightning

    with pytest.raises(_compat.CompatError, match=(
        rf"lit_train relies on lightning.pytorch.trainer.trainer.Trainer._no_such_attribute \(a test\), which "
        rf"lightning {re.escape(lightning.__version__)} does not have"
    )):
        _compat.require_attribute(L.Trainer, "_no_such_attribute", "a test")


#: Private names of other packages: ``pkg._module`` imports, ``obj._attr`` reads on objects that are not ours.
_PRIVATE_USE = re.compile(
    r"(from|import)\s+(hydra|lightning|torch)\b[\w.]*\._\w+"
    r"|from\s+(hydra|lightning|torch)\b[\w.]*\s+import\s.*\b_[a-zA-Z]\w*"
    r"|\b(hydra|lightning|torch|nn)\.[\w.]*\b_[a-zA-Z]\w*"
    r"|\b(trainer|pl_module|strategy|ret|module)\._[a-zA-Z]\w*"
    r"|_hydra_subprocess_cmd"
)


def test_private_names_of_other_packages_appear_only_in_compat():
    offenders = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        if path.name == "_compat.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if _PRIVATE_USE.search(code) and "``" not in code:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def _lightning_private_names(instance) -> set[str]:
    names = set(dir(type(instance))) | set(vars(instance))
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def _lightning_bases():
    """Each lit_train module that subclasses a Lightning class, with an instance of that Lightning class."""
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ModelSummary, ProgressBar
    from lightning.pytorch.plugins.io import TorchCheckpointIO
    from lightning.pytorch.profilers import PassThroughProfiler

    return [
        ("training/checkpoint.py", ModelCheckpoint()), ("training/checkpoint_io.py", TorchCheckpointIO()),
        ("training/console.py", ModelSummary()), ("training/console.py", Callback()),
        ("training/profiler.py", PassThroughProfiler()), ("training/progress.py", ProgressBar()),
        ("training/resume.py", Callback()), ("training/run.py", Callback()), ("sweep/pruning.py", Callback()),
        ("sweep/report.py", Callback()),
    ]


def test_subclasses_of_lightning_classes_touch_none_of_their_private_names():
    """``self._x`` inside a subclass reads Lightning's own private state when the base defines ``_x``."""
    offenders = []
    for path, base in _lightning_bases():
        used = set(re.findall(r"self\.(_[a-zA-Z]\w*)", (ROOT / "src" / "lit_train" / path).read_text()))
        offenders += [f"{path}: {name}" for name in sorted(used & _lightning_private_names(base))]
    assert offenders == []


def test_torchs_kernel_choice_resolves():
    assert _compat.fused_or_foreach([torch.zeros(1)], False, use_fused=True) == (True, False)
    assert _compat.fused_or_foreach([torch.zeros(1)], True, use_fused=True) == (False, False)


def test_the_multiprocessing_launcher_resolves():
    """A ddp_spawn run's parent waits for the processes it starts; a ddp run's parent is rank 0 itself."""
    spawning = L.Trainer(strategy="ddp_spawn", accelerator="cpu", devices=2, logger=False)
    assert not _compat.joins_process_group(spawning.strategy)
    assert _compat.joins_process_group(L.Trainer(strategy="ddp", accelerator="cpu", devices=2, logger=False).strategy)
    assert _compat.joins_process_group(L.Trainer(accelerator="cpu", devices=1, logger=False).strategy)


class _Counts(L.Callback):
    """Counts the batch hooks Lightning calls on it: one overridden, one set on the instance."""

    def __init__(self) -> None:
        self.calls = {"on_train_batch_end": 0, "on_before_zero_grad": 0}
        self.on_before_zero_grad = lambda *args: self._count("on_before_zero_grad")

    def _count(self, hook: str) -> None:
        self.calls[hook] += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._count("on_train_batch_end")


def test_lightning_passes_over_the_batch_hooks_each_callback_leaves_alone():
    counts, plain = _Counts(), L.Callback()
    _compat.skip_unused_batch_hooks([counts, plain])
    # the hooks each callback runs stay; every other batch hook is None, which Lightning passes over
    assert callable(counts.on_train_batch_end) and callable(counts.on_before_zero_grad)
    assert counts.on_after_backward is None
    assert all(getattr(plain, hook) is None for hook in _compat.BATCH_HOOKS)
    assert callable(plain.on_train_start) and callable(plain.state_dict)  # only batch hooks are touched
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=1)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_epochs=1,
                        enable_model_summary=False, callbacks=[counts, plain])
    trainer.fit(_Tiny(), train_dataloaders=data)
    assert counts.calls == {"on_train_batch_end": 4, "on_before_zero_grad": 4}


def test_a_callback_that_refuses_new_attributes_keeps_its_hooks():
    @dataclasses.dataclass(frozen=True)
    class Frozen(L.Callback):
        every: int = 1

    frozen = Frozen()
    _compat.skip_unused_batch_hooks([frozen])
    assert callable(frozen.on_train_batch_end)  # Lightning calls the no-op, as it would without lit_train
