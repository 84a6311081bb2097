"""Bad configs give one line per problem naming the key, the bad value and what is allowed."""

import pytest
from support import ROOT, compose_config

from lit_train.config.compose import check_overrides
from lit_train.config.overrides import expand_callback_additions
from lit_train.config.validate import validate

BAD = [
    (["optimizer.lr=0"], "optimizer.lr: must be a number > 0, got 0"),
    (["optimizer.lr=-0.1"], "optimizer.lr: must be a number > 0, got -0.1"),
    (["optimizer.lr=fast"], "optimizer.lr: must be a number > 0, got 'fast'"),
    (["optimizer.betas=[0.9,1.0]"], "optimizer.betas: must be a list of 2 values, each a number in [0, 1), got [0.9, 1.0]"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay: must be a number >= 0, got -1"),
    (["optimizer=momentum", "optimizer.momentum=1.5"], "optimizer.momentum: must be a number in [0, 1), got 1.5"),
    (["optimizer=sgd", "+optimizer.nesterov=true"], "optimizer.nesterov: Nesterov needs optimizer.momentum > 0, got momentum=None"),
    (["+optimizer.betta=0.9"], "optimizer.betta: not an argument of torch.optim.AdamW; did you mean 'betas'?"),
    (["optimizer._partial_=false"], "optimizer._partial_: must be true"),
    (["data.batch_size=0"], "data.batch_size: must be an integer >= 1, got 0"),
    (["data.batch_size=1.5"], "data.batch_size: must be an integer >= 1, got 1.5"),
    (["data.val_fraction=1.2"], "data.val_fraction: must be a number in [0, 1), got 1.2"),
    (["model.net.activation=relu6"], "model.net.activation: must be one of 'gelu', 'relu', 'sigmoid', 'silu', 'tanh', got 'relu6'"),
    (["model.net.dropout=1"], "model.net.dropout: must be a number in [0, 1), got 1"),
    (["model.net.init=kaiming"], "model.net.init: must be one of 'default', 'he', 'xavier', got 'kaiming'"),
    (["model.net.hidden=[64,0]"], "model.net.hidden: must be a list of integers >= 1"),
    (["model=gpt", "data=text", "model.net.n_head=3"], "model.net.n_head: must divide model.net.n_embd (64), got 3"),
    (["model=regressor"], "model: lit_train.modules.Regressor is for regression but data (lit_train.data.DigitsDataModule) is classification data"),
    (["data=regression"], ["model.num_classes: cannot resolve '${data.num_classes}'",
                           "model.net.out_features: cannot resolve '${data.num_classes}'",
                           "model: lit_train.modules.Classifier is for classification but data (lit_train.data.RegressionDataModule) is regression data"]),
    (["scheduler=plateau", "monitor=val/accuracy"], "monitor: 'val/accuracy' is never logged by the model; did you mean 'val/acc'?"),
    (["monitor=val/los"], "monitor: 'val/los' is never logged by the model; did you mean 'val/loss'?"),
    (["callbacks=[default,early_stopping]", "callbacks.early_stopping.monitor=valid/loss"], "callbacks.early_stopping.monitor: 'valid/loss' is never logged"),
    (["mode=maximum"], "mode: must be one of 'max', 'min', got 'maximum'"),
    (["seed=1.5"], "seed: must be an integer in [0, 4294967295], got 1.5"),
    (["data=text", "model=gpt", "data.block_size=100000"], "data.block_size: must be an integer in [1, 16384], got 100000"),
    (["train=yes"], "train: must be true or false, got 'yes'"),
    (["train=false", "test=false"], "train: nothing to do with train=false and test=false"),
    (["train=false"], "ckpt_path: test=true with train=false needs the checkpoint to test"),
    (["resume=always"], "resume: must be one of 'auto', null, got 'always'"),
    (["ckpt_path=/nonexistent/model.ckpt"], "ckpt_path: no checkpoint file at '/nonexistent/model.ckpt'"),
    (["optimization.interval=hourly"], "optimization.interval: must be one of 'epoch', 'step', null, got 'hourly'"),
    (["optimization.kernel=fused"], "optimization.kernel: must be one of 'auto', 'default', got 'fused'"),
    (["+optimizer.fused=auto"], "optimizer.fused: must be true or false (or null), got 'auto'; set optimization.kernel=auto for the fastest kernel the parameters' devices have"),
    (["+optimizer.kernel=auto"], "optimizer.kernel: lit_train's own setting, not an argument of torch.optim.AdamW: set optimization.kernel instead"),
    (["model.compile=yes"], "model.compile: must be true or false, got 'yes'"),
    (["model.compile_mode=fast"], "model.compile_mode: must be one of 'default', 'max-autotune', 'max-autotune-no-cudagraphs', 'reduce-overhead', got 'fast'"),
    (["model.compile_dynamic=2"], "model.compile_dynamic: must be true or false, got 2"),
    (["+scheduler.interval=step"], "scheduler.interval: lit_train's own setting, not an argument of torch.optim.lr_scheduler.CosineAnnealingLR: set optimization.interval instead"),
    (["+optimizer.decay_norm_and_bias=true"], "optimizer.decay_norm_and_bias: lit_train's own setting, not an argument of torch.optim.AdamW: set optimization.decay_norm_and_bias instead"),
    (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size: must be an integer >= 1, got 0"),
    (["scheduler=step", "scheduler.gamma=0"], "scheduler.gamma: must be a number > 0, got 0"),
    (["scheduler=multistep", "scheduler.milestones=[15,10]"], "scheduler.milestones: must be a list of integers >= 0, strictly increasing"),
    (["scheduler=cosine", "trainer.max_epochs=-1"], "scheduler: torch.optim.lr_scheduler.CosineAnnealingLR needs a finite run"),
    (["scheduler=onecycle", "scheduler.pct_start=1.5"], "scheduler.pct_start: must be a number in (0, 1), got 1.5"),
    (["scheduler=warmup_cosine", "scheduler.warmup_steps=50", "trainer.max_steps=40"], "scheduler.warmup_steps: the warmup (50) must be shorter than the run (trainer.max_steps=40)"),
    (["scheduler=warmup_cosine", "scheduler.warmup_ratio=1.0"], "scheduler.warmup_ratio: must be a number in [0, 1) (or null), got 1.0"),
    (["scheduler=cyclic", "scheduler.base_lr=0.01"], "scheduler.base_lr: must be below scheduler.max_lr (0.001), got 0.01"),
    (["+scheduler.T_maxx=5"], "scheduler.T_maxx: not an argument of torch.optim.lr_scheduler.CosineAnnealingLR; did you mean 'T_max'?"),
    (["trainer.max_epochs=0"], "trainer.max_epochs: must be an integer >= 1 (or -1, null), got 0"),
    (["trainer.precision=bf17"], "trainer.precision: must be one of '64-true'"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val: must be a number >= 0 (or null), got -1"),
    (["trainer.gradient_clip_algorithm=norms"], "trainer.gradient_clip_algorithm: must be one of 'norm', 'value', null, got 'norms'"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches: must be an integer >= 1, got 0"),
    (["model._target_=my_pkg.Model"], "model._target_: cannot import 'my_pkg.Model': no module named 'my_pkg'"),
    (["model.net._target_=os.system"], "model.net._target_: 'os.system' is refused: it can run arbitrary code (denied: os.*)"),
    (["allowed_targets=[os]", "model.net._target_=os.system"], "model.net._target_: 'os.system' is refused: it can run arbitrary code"),
    (["allowed_targets=torch."], "allowed_targets: must be a list of non-empty strings, got 'torch.'"),
    (["allowed_targets=['*']"], "allowed_targets: each entry must be a package, module or class name such as my_pkg (or my_pkg.), got '*'"),
    (["+callbacks.extra={foo: 1}"], "callbacks.extra: must be a callback config with a _target_"),
    # Each target's own arguments, ranges and rules between arguments.
    (["+data.batch_sise=3"], "data.batch_sise: not an argument of lit_train.data.DigitsDataModule; did you mean 'batch_size'?"),
    (["+model.net.hiden=3"], "model.net.hiden: not an argument of lit_train.models.MLP; did you mean 'hidden'?"),
    (["+model.compiled=true"], "model.compiled: not an argument of lit_train.modules.Classifier; did you mean 'compile'?"),
    (["+callbacks.lr_monitor.log_momentm=true"], "callbacks.lr_monitor.log_momentm: not an argument of lit_train.training.lr_monitor.LearningRateMonitor; did you mean 'log_momentum'?"),
    (["data.num_classes=3"], "data.num_classes: must be one of 10, got 3"),
    (["data.val_fraction=0.5", "data.test_fraction=0.5"], "data.val_fraction: data.val_fraction + data.test_fraction must be below 1 to leave training data, got 0.5 + 0.5"),
    (["data=text", "model=gpt", "data.path=/nonexistent/book.txt"], "data.path: no such file '/nonexistent/book.txt'"),
    (["model.net.hidden=64"], "model.net.hidden: must be a list of integers >= 1, got 64"),
    (["callbacks.model_checkpoint.every_n_train_steps=5", "+callbacks.model_checkpoint.every_n_epochs=1"],
     "callbacks.model_checkpoint.every_n_epochs: checkpoints are saved on one trigger, and "
     "callbacks.model_checkpoint.every_n_train_steps is set too; set all but one of every_n_train_steps, "
     "every_n_epochs to null"),
    (["model=cnn", "model.net.hidden=[64]"], "model.net.hidden: must be an integer >= 1, got [64]"),
    (["+model.label_smoothing=1.0"], "model.label_smoothing: must be a number in [0, 1), got 1.0"),
    (["optimizer=nesterov", "+optimizer.dampening=0.1"], "optimizer.nesterov: Nesterov needs optimizer.dampening=0, got dampening=0.1"),
    (["callbacks.gradient_monitor.vanishing=2000"], "callbacks.gradient_monitor.vanishing: must be below callbacks.gradient_monitor.exploding (1000.0), got 2000"),
    (["callbacks.gradient_monitor.log_every_n_steps=0"], "callbacks.gradient_monitor.log_every_n_steps: must be an integer >= 1 (or null), got 0"),
    (["callbacks=[default,lr_finder]", "callbacks.lr_finder.min_lr=20"], "callbacks.lr_finder.min_lr: must be below callbacks.lr_finder.max_lr (10.0), got 20"),
    (["callbacks=[default,warmup]", "callbacks.warmup.mode=exponential"], "callbacks.warmup.start_factor: must be > 0 with callbacks.warmup.mode=exponential, got 0.0"),
]


def _assert_exactly(problems: list[str], expected: str | list[str]) -> None:
    """The problems are the expected ones, in order and no others: each starts with its expected text."""
    expected = [expected] if isinstance(expected, str) else expected
    assert len(problems) == len(expected) and all(p.startswith(e) for p, e in zip(problems, expected)), problems


@pytest.mark.parametrize(("overrides", "expected"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_config_is_reported(overrides, expected, tmp_path):
    problems = check_overrides(overrides + [f"hydra.run.dir={tmp_path / 'run'}"])
    _assert_exactly(problems, expected)
    assert all("\n" not in p for p in problems)
    assert not (tmp_path / "run").exists()


COMPOSE_ERRORS = [
    (["optimizer=adamx"], "optimizer: unknown option 'adamx'; did you mean 'adam'? (choose from adagrad, adam, adamw, lamb"),
    (["scheduler=cosin"], "scheduler: unknown option 'cosin'; did you mean 'cosine'?"),
    (["model=mpl"], "model: unknown option 'mpl'; did you mean 'mlp'?"),
    (["optimizer.lrr=0.1"], "optimizer.lrr: no such key; did you mean 'lr'? (to add a new key use +optimizer.lrr=0.1)"),
    (["optimzer=adam"], "optimzer: no such key; did you mean 'optimizer'?"),
    (["trainer.max_epoch=3"], "trainer.max_epoch: no such key; did you mean 'max_epochs'?"),
    (["optimizer=="], "bad override:"),
    (["data.batch_sise=3"], "data.batch_sise: no such key; did you mean 'batch_size'?"),
    (["model.net.hiden=3"], "model.net.hiden: no such key; did you mean 'hidden'?"),
]


@pytest.mark.parametrize(("overrides", "expected"), COMPOSE_ERRORS, ids=[" ".join(o) for o, _ in COMPOSE_ERRORS])
def test_bad_command_line_is_reported(overrides, expected):
    _assert_exactly(check_overrides(overrides), expected)


def test_every_problem_is_reported_at_once():
    problems = check_overrides(["optimizer.lr=0", "data.batch_size=0", "mode=up"])
    assert [p.split(":")[0] for p in problems] == ["mode", "data.batch_size", "optimizer.lr"]


def test_unknown_group_options_and_keys_are_reported_together():
    problems = check_overrides(["optimizer=adamx", "scheduler=cosin", "optimizer.lrr=1"])
    assert [p.split(":")[0] for p in problems] == ["optimizer", "scheduler", "optimizer.lrr"]


def test_multirun_checks_every_swept_value():
    problems = check_overrides(["optimizer=sgd,adamx", "optimizer.lr=0.1,-1"], multirun=True)
    _assert_exactly(problems, ["optimizer: unknown option 'adamx'", "optimizer.lr: must be a number > 0, got -1"])
    problems = check_overrides(["optimizer=sgd,adam", "optimizer.lr=0.1,-1"], multirun=True)
    assert problems == ["optimizer.lr: must be a number > 0, got -1"]


def test_run_dir_under_a_file_is_reported(tmp_path):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    cfg = compose_config([], run_dir=blocker / "run")
    assert validate(cfg) == [f"run_dir: cannot write under {str(blocker)!r} (for {str(blocker / 'run')!r}); "
                             "choose another with hydra.run.dir=..."]


def test_default_config_is_valid(tmp_path):
    assert validate(compose_config([], run_dir=tmp_path)) == []


def test_plus_callbacks_adds_to_the_default_set():
    assert expand_callback_additions(["+callbacks=early_stopping"]) == ["callbacks=[default,early_stopping]"]
    assert expand_callback_additions(["callbacks=none", "+callbacks=[a,b]"]) == ["callbacks=[none,a,b]"]
    assert expand_callback_additions(["seed=1"]) == ["seed=1"]


def test_a_corrupt_checkpoint_is_reported(tmp_path):
    import torch

    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    assert check_overrides([f"ckpt_path={ckpt}"]) == []
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    assert check_overrides([f"ckpt_path={ckpt}"]) == [
        f"ckpt_path: '{ckpt}' is not a readable checkpoint (truncated or corrupt?)"
    ]


def test_resume_auto_and_an_explicit_checkpoint_conflict(tmp_path):
    import torch

    ckpt = tmp_path / "x.ckpt"
    torch.save({}, ckpt)
    problems = check_overrides(["resume=auto", f"ckpt_path={ckpt}"])
    assert problems == [f"resume: resume=auto finds the checkpoint itself; drop ckpt_path='{ckpt}' or resume=auto"]


def test_allowed_targets_admits_a_listed_config(tmp_path):
    prefixes = "[torch.,lightning.,lit_train.,lit_callbacks.,pytorch_optimizer.]"
    assert check_overrides([f"allowed_targets={prefixes}", f"hydra.run.dir={tmp_path}"]) == []


def test_a_users_class_gets_no_rules_of_lit_trains_classes(monkeypatch):
    """Only a target's own spec checks its node: the digits' class count or a fraction is nothing to my_pkg's class,
    which gets the keys its constructor takes."""
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "byo"))
    overrides = ["data._target_=my_pkg.MyDataModule", "data.num_classes=1", "data.val_fraction=7",
                 "+data.batch_sise=3", "model._target_=my_pkg.MyClassifier", "model.compile_mode=fast"]
    assert check_overrides(overrides) == []
