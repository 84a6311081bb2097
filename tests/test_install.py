"""The set-up script: quick no-op when installed from this checkout, detects what is missing."""

import importlib.util
import subprocess
import sys

from support import ROOT

spec = importlib.util.spec_from_file_location("install", ROOT / "scripts" / "install.py")
install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install)


def test_nothing_is_missing_in_this_environment():
    assert install.missing() == []


def test_check_mode_reports_success_without_installing():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "install.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == ""


def test_a_package_from_another_checkout_counts_as_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(install.LOCAL_PACKAGES, "lit_train", tmp_path / "elsewhere" / "lit_train")
    assert install.missing() == [f"lit_train (from {tmp_path / 'elsewhere' / 'lit_train'})"]


def test_a_missing_distribution_is_reported(monkeypatch):
    monkeypatch.setattr(install, "REQUIRED", (*install.REQUIRED, "surely-not-installed-dist"))
    assert install.missing() == ["surely-not-installed-dist"]
