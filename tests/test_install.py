"""The set-up script: quick no-op when installed from this checkout, detects what is missing."""

import importlib.util
import subprocess
import sys

import pytest
from support import ROOT

spec = importlib.util.spec_from_file_location("install", ROOT / "scripts" / "install.py")
install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install)

#: Where each local package imports from in this interpreter (None where it does not import).
IMPORTED_FROM = {
    module: (origin.parent if origin is not None else None)
    for module, origin in ((module, install._origin(module)) for module in install.LOCAL_PACKAGES)
}
#: The script checks that the packages import from its own checkout: true only where this checkout was installed.
installed_from_here = pytest.mark.skipif(
    any(folder is not None and ROOT.resolve() not in folder.parents for folder in IMPORTED_FROM.values()),
    reason="lit_train is installed from another checkout of the repository; run `make install` here to test the check",
)


@pytest.fixture
def installed_as_is(monkeypatch):
    """The script's expectations set to where the packages import from, as if this checkout were the installed one."""
    assert None not in IMPORTED_FROM.values(), IMPORTED_FROM
    for module, folder in IMPORTED_FROM.items():
        monkeypatch.setitem(install.LOCAL_PACKAGES, module, folder)
    assert install.missing() == []


@installed_from_here
def test_nothing_is_missing_in_this_environment():
    assert install.missing() == []


@installed_from_here
def test_check_mode_reports_success_without_installing():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "install.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == ""


def test_a_package_from_another_checkout_counts_as_missing(installed_as_is, monkeypatch, tmp_path):
    monkeypatch.setitem(install.LOCAL_PACKAGES, "lit_train", tmp_path / "elsewhere" / "lit_train")
    assert install.missing() == [f"lit_train (from {tmp_path / 'elsewhere' / 'lit_train'})"]


def test_a_missing_distribution_is_reported(installed_as_is, monkeypatch):
    monkeypatch.setattr(install, "REQUIRED", (*install.REQUIRED, "surely-not-installed-dist"))
    assert install.missing() == ["surely-not-installed-dist"]
