"""NoProfiler stands in for Lightning's per-hook profiling when trainer.profiler is unset."""

from support import FAST, compose_config

from lit_train.training.profiler import NoProfiler
from lit_train.training.run import run


def test_profile_hands_out_one_shared_no_op_context():
    profiler = NoProfiler()
    assert profiler.profile("a") is profiler.profile("b")
    with profiler.profile("training_step"):
        pass


def test_a_run_without_a_profiler_profiles_its_hooks_with_no_profiler(tmp_path, monkeypatch):
    actions = []
    profile = NoProfiler.profile
    monkeypatch.setattr(NoProfiler, "profile", lambda self, name: actions.append(name) or profile(self, name))
    cfg = compose_config([*FAST, "test=false"], run_dir=tmp_path)
    assert cfg.trainer.profiler is None
    run(cfg)
    # Lightning wraps each hook call in the trainer's profiler: every one of them went through NoProfiler.
    assert actions.count("[Strategy]SingleDeviceStrategy.training_step") == 2  # one per step of the run
    assert len(actions) > 100


def test_the_profiler_preset_saves_its_report_in_the_run_directory(tmp_path):
    run(compose_config([*FAST, "debug=profiler", "test=false"], run_dir=tmp_path))
    report = (tmp_path / "fit-profile.txt").read_text()
    assert "run_training_batch" in report and "Mean duration" in report
