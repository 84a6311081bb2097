"""``action=doctor``: finds what would make training fail or crawl, before a training run.

Each check is a plain function in one of :mod:`.data_checks`, :mod:`.init_checks`,
:mod:`.gradient_checks` and :mod:`.optimization_checks`; :func:`run_doctor` runs them on
the configured module and data and writes ``doctor.json`` and ``doctor.png``.
"""

from lit_train.training.doctor.checkup import run_doctor
from lit_train.training.doctor.findings import CHECKS, EXIT_ERRORS, SEVERITIES, Finding, Report, Skipped, exit_code
from lit_train.training.doctor.settings import DoctorSettings

__all__ = ["CHECKS", "EXIT_ERRORS", "SEVERITIES", "DoctorSettings", "Finding", "Report", "Skipped", "exit_code",
           "run_doctor"]
