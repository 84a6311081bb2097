"""What a config may build: lit_train's packages by default, the user's own by one key or by typing it on the
command line, and never a callable that runs code or loads pickles, whoever asks for it."""

import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from support import ROOT, run_cli

from lit_train.config.compose import check_overrides, planned_job_config
from lit_train.config.targets import DEFAULT_ALLOWED, TargetPolicy, sites, spellings, typed, under
from lit_train.config.validate import hydra_problems, validate

README = (ROOT / "README.md").read_text()
BYO = {"PYTHONPATH": str(ROOT / "tests" / "byo")}


def _groups(loader, parent: str = "") -> list[str]:
    found = []
    for group in loader.list_groups(parent):
        full = f"{parent}/{group}" if parent else group
        found += [full, *_groups(loader, full)]
    return found


#: Groups that exist only under another choice.
NEEDS = {"hydra/sweeper/sampler": ["hydra/sweeper=lit_optuna"], "hydra/sweeper/pruner": ["hydra/sweeper=lit_optuna"]}


def test_every_target_of_every_option_of_every_group_is_allowed_by_default():
    """Hydra's own groups included; nothing typed on the command line, so nothing is trusted for being typed."""
    GlobalHydra.instance().clear()
    checked, packages = 0, set()
    with initialize_config_module("lit_train.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for group in _groups(loader):
            for option in loader.get_group_options(group):
                if group == "hydra":  # Hydra's primary config, not an option
                    continue
                cfg = compose("config", overrides=[*NEEDS.get(group, []), f"{group}={option}"], return_hydra_config=True)
                job = planned_job_config(cfg, multirun=False)
                found = [*sites(job), *sites(cfg.hydra, "hydra", ("_target_", "class", "()"))]
                assert hydra_problems(cfg, []) == [], f"{group}={option}"
                assert TargetPolicy().problems(sites(job)) == [], f"{group}={option}"
                checked += 1
                packages |= {site.target.partition(".")[0] for site in found}
    assert checked > 70
    # The defaults are what the configs use (torchmetrics: a dependency, for the user's own metrics).
    assert packages == set(DEFAULT_ALLOWED) - {"torchmetrics"}


def _problems(target: str, typed_it: bool = True, **extra) -> list[str]:
    cfg = OmegaConf.create({"model": {"_target_": "lit_train.modules.Classifier", "net": {"_target_": target}}, **extra})
    command_line = [f"model.net._target_={target}"] if typed_it else []
    if "allowed_targets" in extra:
        command_line.append(f"allowed_targets=[{','.join(extra['allowed_targets'])}]")
    return validate(cfg, command_line)


DENIED = [
    ("torch.load", "it loads pickles, which can run arbitrary code (denied: torch.load)"),
    ("torch.distributed.run.main", "it can run arbitrary code (denied: torch.distributed.run.*)"),
    ("torch.hub.load", "it can run arbitrary code (denied: torch.hub.*)"),
    ("torch.jit.load", "it can run arbitrary code (denied: torch.jit.load)"),
    ("torch.package.PackageImporter", "it can run arbitrary code (denied: torch.package.*)"),
    ("torch.utils.cpp_extension.load_inline", "it can run arbitrary code (denied: torch.utils.cpp_extension.*)"),
    ("pickle.loads", "it loads pickles, which can run arbitrary code (denied: pickle.*)"),
    ("numpy.load", "it loads pickles, which can run arbitrary code (denied: numpy.load)"),
    ("builtins.exec", "it can run arbitrary code (denied: builtins.*)"),
    ("os.system", "it can run arbitrary code (denied: os.*)"),
    ("subprocess.Popen", "it can run arbitrary code (denied: subprocess.*)"),
    ("importlib.import_module", "it can run arbitrary code (denied: importlib.*)"),
    ("runpy.run_path", "it can run arbitrary code (denied: runpy.*)"),
    ("lit_train.modules.Classifier.load_from_checkpoint", "it loads pickles, which can run arbitrary code (denied: *.load_from_checkpoint)"),
    ("lightning.pytorch.cli.LightningCLI", "it builds whatever classes its arguments name (denied: lightning.pytorch.cli.*)"),
    # Another name for a denied callable is that callable.
    ("torch.utils.model_zoo.load_url", "it can run arbitrary code (denied: torch.utils.model_zoo.*)"),
    ("lightning.pytorch.trainer.connectors.signal_connector.call",
     "it is subprocess.call, which can run arbitrary code (denied: subprocess.*)"),
    ("lit_train.config.validate.os.system", "it is os.system, which can run arbitrary code (denied: os.*)"),
]


@pytest.mark.parametrize(("target", "reason"), DENIED, ids=[t for t, _ in DENIED])
@pytest.mark.parametrize("typed_it", [True, False], ids=["typed", "from a config file"])
def test_denied_callables_are_refused_whoever_names_them(target, reason, typed_it):
    problems = _problems(target, typed_it, allowed_targets=[target.partition(".")[0]])
    assert problems == [f"model.net._target_: {target!r} is refused: {reason}"]


@pytest.mark.parametrize(("target", "part"), [("torch._dynamo.eval_frame.OptimizedModule", "_dynamo"),
                                              ("lightning.fabric.utilities.cloud_io._load", "_load"),
                                              ("hydra._internal.utils._locate", "_internal")])
def test_private_names_of_the_trusted_packages_are_refused(target, part):
    problems = _problems(target)
    assert problems == [f"model.net._target_: {target!r} is refused: {part!r} is private to "
                        f"{target.partition('.')[0]}; only its public names are allowed"]


def test_hydra_s_own_plugins_are_the_private_names_allowed():
    assert _problems("hydra._internal.core_plugins.basic_launcher.BasicLauncher", typed_it=False) == []


def test_a_locator_s_path_is_a_target_too():
    cfg = OmegaConf.create({"callbacks": {"w": {"_target_": "lit_callbacks.WeightInit", "modules": [
        {"_target_": "hydra.utils.get_class", "path": "torch.nn.Linear"},
        {"_target_": "hydra.utils.get_method", "path": "os.system"}]}}})
    assert validate(cfg, []) == [
        "callbacks.w.modules[1].path: 'os.system' is refused: it can run arbitrary code (denied: os.*)"]


@pytest.fixture
def packages(tmp_path, monkeypatch):
    """Importable packages acme and acme2, and a config folder whose experiment names them."""
    for name in ("acme", "acme2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    return tmp_path


def _experiment(folder: Path, name: str, body: str) -> str:
    (folder / "conf" / "experiment" / f"{name}.yaml").write_text("# @package _global_\n" + textwrap.dedent(body))
    return f"hydra.searchpath=[file://{folder / 'conf'}]"


@pytest.mark.parametrize(("entry", "target", "allowed"), [
    ("acme", "acme.Thing", True), ("acme.", "acme.Thing", True), ("acme", "acme2.Thing", False),
    ("acme.", "acme2.Thing", False), ("acme.Thing", "acme.Thing", True), ("acme.Thing", "acme.Thingy", False),
])
def test_an_entry_allows_its_package_and_nothing_that_merely_starts_like_it(packages, entry, target, allowed):
    problems = _problems(target, typed_it=False, allowed_targets=[entry])
    if allowed:
        assert problems == []
    else:
        top = target.partition(".")[0]
        assert problems == [f"model.net._target_: {target!r} is not an allowed target; to allow it add "
                            f"allowed_targets=[{entry},{top}]"]
    assert under(target, entry) is allowed


def test_a_target_typed_on_the_command_line_needs_no_entry_but_the_same_from_a_config_file_does(packages):
    assert check_overrides(["model._target_=acme.Thing"]) == []
    searchpath = _experiment(packages, "theirs", "model:\n  _target_: acme.Thing\n")
    assert check_overrides([searchpath, "experiment=theirs"]) == [
        "model._target_: 'acme.Thing' is not an allowed target; to allow it add allowed_targets=[acme]"]
    assert check_overrides([searchpath, "experiment=theirs", "allowed_targets=[acme]"]) == []
    # Typed for one key only: the same name elsewhere is the config file's.
    assert check_overrides([searchpath, "experiment=theirs", "model.net._target_=acme.Thing"]) == [
        "model._target_: 'acme.Thing' is not an allowed target; to allow it add allowed_targets=[acme]"]


def test_only_the_command_line_adds_to_the_allow_list(packages):
    searchpath = _experiment(packages, "widens", "allowed_targets: [acme]\nmodel:\n  _target_: acme.Thing\n")
    assert check_overrides([searchpath, "experiment=widens"]) == [
        "allowed_targets: ['acme'] is set by a config file, not the command line; only the command line can allow "
        "more targets (add allowed_targets=[acme] if you trust that config)",
        "model._target_: 'acme.Thing' is not an allowed target; to allow it add allowed_targets=[acme]",
    ]


def test_null_and_empty_allowed_targets_mean_the_defaults(packages):
    for value in ("null", "[]"):
        assert check_overrides([f"allowed_targets={value}"]) == []
        assert check_overrides([f"allowed_targets={value}", "model.net._target_=os.system"]) == [
            "model.net._target_: 'os.system' is refused: it can run arbitrary code (denied: os.*)"]


def test_a_config_file_may_not_add_to_hydras_record_of_the_command_line(packages):
    searchpath = _experiment(packages, "forged", "hydra:\n  overrides:\n    task: ['model._target_=acme.Thing']\n")
    assert check_overrides([searchpath, "experiment=forged"]) == [
        "hydra.overrides: 'model._target_=acme.Thing' is not on the command line; a config file may not add overrides"]


def test_an_interpolated_target_is_refused(packages):
    searchpath = _experiment(packages, "hidden", """\
        model:
          _target_: ${oc.env:LIT_TRAIN_TEST_TARGET,lit_train.modules.Classifier}
        callbacks:
          built: "${oc.create:'{_target_: acme.Thing}'}"
        """)
    assert check_overrides([searchpath, "experiment=hidden"]) == [
        "model._target_: must be written out, not an interpolation, got "
        "'${oc.env:LIT_TRAIN_TEST_TARGET,lit_train.modules.Classifier}' (what it resolves to can change before the "
        "run builds it)",
        "callbacks.built: a config with a _target_ must be written out, not built by an interpolation, got "
        "\"${oc.create:'{_target_: acme.Thing}'}\"",
    ]


def test_hydra_node_targets_are_checked(packages):
    searchpath = _experiment(packages, "hydra_node", """\
        hydra:
          callbacks:
            theirs:
              _target_: acme.Thing
          job_logging:
            handlers:
              theirs:
                class: acme.Thing
            formatters:
              theirs:
                "()": acme2.Thing
        """)
    assert check_overrides([searchpath, "experiment=hydra_node"]) == [
        "hydra.job_logging.formatters.theirs.(): 'acme2.Thing' is not an allowed target; to allow it add "
        "allowed_targets=[acme2]",
        "hydra.job_logging.handlers.theirs.class: 'acme.Thing' is not an allowed target; to allow it add "
        "allowed_targets=[acme]",
        "hydra.callbacks.theirs._target_: 'acme.Thing' is not an allowed target; to allow it add "
        "allowed_targets=[acme]",
    ]
    assert check_overrides(["+hydra.callbacks.x._target_=os.system"]) == [
        "hydra.callbacks.x._target_: 'os.system' is refused: it can run arbitrary code (denied: os.*)"]


def test_a_sweep_checks_hydra_s_node_once_and_every_target_its_params_may_choose(packages):
    problems = check_overrides(["+hydra.callbacks.x._target_=os.system", "seed=1,2,3"], multirun=True)
    assert problems == ["hydra.callbacks.x._target_: 'os.system' is refused: it can run arbitrary code (denied: os.*)"]
    searchpath = _experiment(packages, "params", "hydra:\n  sweeper:\n    params:\n"
                                                 "      model._target_: lit_train.modules.Classifier,acme.Thing\n")
    assert check_overrides([searchpath, "experiment=params"], multirun=True) == [
        "hydra.sweeper.params.model._target_: 'acme.Thing' is not an allowed target; to allow it add "
        "allowed_targets=[acme]"]


def test_the_command_line_is_read_as_hydra_reads_it():
    assert typed(["+callbacks.k={_target_: killer.KillAt, step: 30}", "~callbacks.x", "model._target_=choice(a.B,c.D)",
                  "x=interval(0,1)"]) == {("callbacks.k._target_", "killer.KillAt"), ("model._target_", "a.B"),
                                          ("model._target_", "c.D")}


def test_names_are_followed_to_where_they_are_defined_without_importing_them():
    assert spellings("torch.optim.AdamW") == (["torch.optim.AdamW", "torch.optim.adamw.AdamW"],
                                              ["torch.optim.adamw.AdamW"])
    assert spellings("lit_train.config.validate.Path")[1] == ["pathlib.Path"]
    script = ("import sys; from lit_train.config.targets import spellings; spellings('torch.optim.AdamW'); "
              "spellings('lightning.pytorch.Trainer'); assert not {'torch', 'lightning'} & set(sys.modules)")
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).returncode == 0


def test_a_name_that_leads_out_of_the_allowed_packages_is_not_allowed():
    assert _problems("lit_train.config.validate.Path", typed_it=False) == [
        "model.net._target_: 'lit_train.config.validate.Path' is not an allowed target (it is pathlib.Path); to allow "
        "it add allowed_targets=[pathlib]"]


# Through the real command line.

def _readme_refusal() -> tuple[list[str], list[str]]:
    block = next(b for b in re.findall(r"```text\n(.*?)```", README, flags=re.S) if "is not an allowed target" in b)
    example = next(e for e in block.split("$ ") if e.startswith("python -m lit_train "))
    command, *lines = example.strip().splitlines()
    return shlex.split(command)[3:], lines


def test_a_stranger_s_config_is_refused_as_the_readme_shows_and_leaves_nothing_behind(tmp_path):
    args, expected = _readme_refusal()
    result = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=BYO, timeout=60)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines() == expected
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "expected"), [
    (["model.net._target_=os.system"], "error: model.net._target_: 'os.system' is refused: it can run arbitrary code (denied: os.*)"),
    (["model._target_=torch.hub.load", "+model.repo_or_dir=x"],
     "error: model._target_: 'torch.hub.load' is refused: it can run arbitrary code (denied: torch.hub.*)"),
])
def test_a_denied_target_typed_on_the_command_line_is_refused_in_one_line(args, expected, tmp_path):
    result = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines() == [expected, "lit_train: 1 config problem(s); nothing was run."]
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_is_refused_before_its_first_job(tmp_path):
    result = run_cli("-m", "seed=1,2", "model.net._target_=builtins.eval", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                     cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines()[0] == (
        "error: model.net._target_: 'builtins.eval' is refused: it can run arbitrary code (denied: builtins.*)")
    assert list(tmp_path.iterdir()) == []
