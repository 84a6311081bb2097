import os
import signal

# One torch thread in the tests and in every process they start: the models are tiny, and
# with tests running in parallel a second thread only waits for a core held by another test.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

torch.set_num_threads(1)  # in case torch was imported before the variable was set

# A suite started in the background of a non-interactive shell (a CI script's `make test &`) inherits SIGINT
# ignored, and every run it starts would too, which lit_train rightly leaves ignored; the Ctrl+C tests need
# SIGINT as a terminal delivers it. Handled here, it reaches the runs the tests start at its default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _clear_hydra():
    yield
    GlobalHydra.instance().clear()
