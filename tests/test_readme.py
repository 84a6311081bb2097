"""Every command and code block in README.md works as shown."""

import re
import shlex
import subprocess
import sys

import pytest
from support import ROOT, compose_config, read_summary, run_cli

from lit_train.config.overrides import expand_callback_additions
from lit_train.training.run import run
from lit_train.config.validate import validate

README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _commands() -> list[list[str]]:
    lines = [line.split("#")[0].strip() for block in _blocks("bash") for line in block.splitlines()]
    return [shlex.split(line)[3:] for line in lines if line.startswith("python -m lit_train")]


SINGLE = [args for args in _commands() if "-m" not in args]
MULTI = [args for args in _commands() if "-m" in args]


def test_readme_has_commands():
    assert len(SINGLE) >= 8 and len(MULTI) >= 2


@pytest.mark.parametrize("args", SINGLE, ids=[" ".join(a) for a in SINGLE])
def test_single_run_command_trains(args, tmp_path):
    overrides = [a for a in expand_callback_additions(args) if not a.startswith("-")]
    if any("my_pkg" in a for a in overrides):
        # The reader's own package: tests/byo/my_pkg, written as a user writes one, through the real CLI.
        result = run_cli(*args, "debug=fast_dev_run", f"hydra.run.dir={tmp_path}", cwd=tmp_path,
                         env={"PYTHONPATH": str(ROOT / "tests" / "byo")})
        assert result.returncode == 0, result.stderr[-3000:]
        assert read_summary(tmp_path)["status"] == "completed"
        if args == ["model._target_=my_pkg.MyLitModule", "data._target_=my_pkg.MyDataModule"]:
            (shown,) = [b for b in _blocks("text") if b.startswith("lit_train: my_pkg.")]
            assert all(f"{line}\n" in result.stdout for line in shown.splitlines()), result.stdout
        return
    cfg = compose_config([*overrides, "debug=fast_dev_run", "callbacks.progress_bar=null"], run_dir=tmp_path)
    assert validate(cfg) == []
    run(cfg)
    assert read_summary(tmp_path)["status"] == "completed"


@pytest.mark.slow
@pytest.mark.parametrize("args", MULTI, ids=[" ".join(a) for a in MULTI])
def test_multirun_command_runs_every_job(args, tmp_path):
    # A study's length is the preset's choice (30 trials); four show that its trials run, in a fraction of the time.
    trials = ["hydra.sweeper.n_trials=4"] if "hparams_search=optuna" in args else []
    result = run_cli(*args, *trials, "debug=fast_dev_run", "callbacks.progress_bar=null", f"hydra.sweep.dir={tmp_path}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.name.isdigit())
    assert len(jobs) >= 3 and all(read_summary(job)["status"] == "completed" for job in jobs)


#: Commands of an app that is not lit_train, swept by lit_optuna: ``python tests/foreign_app/<app>.py ...``.
FOREIGN = [shlex.split(line.split("#")[0]) for block in _blocks("bash") for line in block.splitlines()
           if line.startswith("python tests/foreign_app/")]


def test_readme_shows_foreign_app_sweeps():
    assert [args[1] for args in FOREIGN] == ["tests/foreign_app/app.py", "tests/foreign_app/app_optuna.py"]


@pytest.mark.slow
@pytest.mark.parametrize("args", FOREIGN, ids=[" ".join(a) for a in FOREIGN])
def test_foreign_app_command_sweeps(args, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / args[1]), *args[2:], f"hydra.sweep.dir={tmp_path}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "best.yaml").is_file()


LOOK_ONLY = [args for args in SINGLE if any(arg.startswith("action=") for arg in args)]


def test_readme_shows_the_actions_that_look_without_training():
    assert sorted(args[0] for args in LOOK_ONLY) == ["action=doctor", "action=lr_find", "action=show_schedule"]


@pytest.mark.slow
@pytest.mark.parametrize("args", LOOK_ONLY, ids=[" ".join(a) for a in LOOK_ONLY])
def test_action_commands_print_what_the_readme_says(args, tmp_path):
    """As written: on the README's own data, model and run length."""
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = tmp_path.glob("outputs/runs/*/*")
    summary = read_summary(run_dir)
    if args[0] == "action=lr_find":
        others = " ".join(args[1:])
        assert f"  use it: python -m lit_train {others} optimizer.lr={summary['lr_suggestion']:.4g}\n" in result.stdout
        assert (run_dir / "lr_finder.png").is_file()
    elif args[0] == "action=doctor":
        assert summary["doctor"] == {"verdict": "healthy", "errors": 0, "warnings": 0}
        assert (run_dir / "doctor.json").is_file() and (run_dir / "doctor.png").is_file()
    else:
        assert f"LR schedule: {len(summary['lr_schedule'])} optimizer steps, 20 per epoch\n" in result.stdout
        assert (run_dir / "lr_schedule.png").is_file()
    assert "best" not in result.stdout


def test_error_examples_print_what_the_readme_shows(tmp_path):
    (block,) = [b for b in _blocks("text") if b.startswith("$ python -m lit_train")]
    for example in block.split("$ ")[1:]:
        command, *expected = example.strip().splitlines()
        result = run_cli(*shlex.split(command)[3:], cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == expected


def test_python_blocks_run():
    for block in _blocks("python"):
        exec(compile(block, "README.md", "exec"), {})


def test_yaml_block_is_a_foreign_defaults_list():
    (block,) = _blocks("yaml")
    assert "optimizer: lamb" in block and "scheduler: cosine" in block  # run in test_plugin.py


@pytest.mark.slow
def test_make_train_installs_nothing_new_and_trains(tmp_path):
    import subprocess

    result = subprocess.run(["make", "-C", str(ROOT), "train", f"ARGS=debug=fast_dev_run hydra.run.dir={tmp_path}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "installing" not in result.stdout  # already installed from this checkout: no reinstall
    assert read_summary(tmp_path)["status"] == "completed"
