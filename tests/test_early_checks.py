"""What Hydra acts on before lit_train's checks run (its callbacks, its own logging, a root config of the user's own)
is checked before Hydra acts: a refused target never runs, not even once."""

import pytest
from omegaconf import OmegaConf
from support import FAST, run_cli

from lit_train.config.checks import CheckConfig

MARKER = "RAN-BEFORE-THE-CHECK"
#: A user's config that builds on lit_train's root config, as the README's bring-your-own section shows.
EXTENDS = "defaults:\n  - config\n  - _self_\n"


def _refused(result, line: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert MARKER not in result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"error: {line}", "lit_train: 1 config problem(s); nothing was run."]


def test_a_hydra_callback_on_the_command_line_is_refused_before_hydra_builds_it(tmp_path):
    result = run_cli("+hydra.callbacks.x._target_=builtins.print", f"+hydra.callbacks.x._args_=[{MARKER}]",
                     cwd=tmp_path)
    _refused(result, "hydra.callbacks.x._target_: 'builtins.print' is refused: it can run arbitrary code "
                     "(denied: builtins.*)")
    assert not (tmp_path / "outputs").exists()


def test_a_hydra_callback_in_a_users_config_is_refused_before_hydra_builds_it(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mine.yaml").write_text(
        EXTENDS + f"hydra:\n  callbacks:\n    x:\n      _target_: builtins.print\n      _args_: [{MARKER}]\n")
    result = run_cli("-cd", "conf", "-cn", "mine", cwd=tmp_path)
    _refused(result, "hydra.callbacks.x._target_: 'builtins.print' is refused: it can run arbitrary code "
                     "(denied: builtins.*)")


def test_a_logging_factory_in_a_users_config_is_refused_before_hydra_configures_its_logging(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mine.yaml").write_text(
        EXTENDS + "hydra:\n  hydra_logging:\n    version: 1\n    handlers:\n      h:\n        (): builtins.print\n"
        f"        args: {MARKER}\n    root:\n      handlers: [h]\n")
    result = run_cli("--config-dir=conf", "--config-name=mine", cwd=tmp_path)
    _refused(result, "hydra.hydra_logging.handlers.h.(): 'builtins.print' is refused: it can run arbitrary code "
                     "(denied: builtins.*)")


def test_a_root_config_that_drops_lit_trains_is_refused(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mine.yaml").write_text(
        f"hydra:\n  callbacks:\n    x:\n      _target_: builtins.print\n      _args_: [{MARKER}]\nseed: 1\n")
    result = run_cli("-cd", "conf", "-cn", "mine", cwd=tmp_path)
    _refused(result, "--config-name: the root config 'mine' does not build on lit_train's root config, whose checks "
                     "it would skip; start its defaults list with '- config' (and keep hydra.callbacks.check)")


def test_a_users_root_config_that_builds_on_lit_trains_trains(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mine.yaml").write_text(EXTENDS + "seed: 7\n")
    result = run_cli("-cd", "conf", "-cn", "mine", *FAST, "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml").seed == 7


def test_a_run_directory_under_proc_is_refused_even_for_root(tmp_path):
    result = run_cli("hydra.run.dir=/proc/lit_train_run", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == ("error: run_dir: cannot write under '/proc' (for '/proc/lit_train_run'); "
                                             "choose another with hydra.run.dir=...")


def test_a_check_that_fails_refuses_the_command_rather_than_letting_it_run_unchecked(capsys):
    """Hydra only warns when a callback raises, and would then run the job unchecked."""
    with pytest.raises(SystemExit) as ended:
        CheckConfig().on_run_start(config=OmegaConf.create({"seed": 1}))  # no Hydra node: the check itself fails
    assert ended.value.code == 2
    assert capsys.readouterr().err.startswith("error: the config could not be checked: ")


@pytest.mark.parametrize(("args", "line"), [
    (["-cd", "missing"], "--config-dir: no such directory '{tmp}/missing'"),
    (["-cn", "mine"], "--config-name: no config 'mine' in lit_train's configs"),
    (["-cd", "conf", "-cn", "mine"], "--config-name: no config 'mine' in '{tmp}/conf' or lit_train's configs"),
])
def test_a_missing_config_folder_or_name_is_named(tmp_path, args, line):
    (tmp_path / "conf").mkdir()
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {line.format(tmp=tmp_path)}",
                                          "lit_train: 1 config problem(s); nothing was run."]
