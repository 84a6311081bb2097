import os

# One torch thread in the tests and in every process they start: the models are tiny, and
# with tests running in parallel a second thread only waits for a core held by another test.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from hydra.core.global_hydra import GlobalHydra


@pytest.fixture(autouse=True)
def _clear_hydra():
    yield
    GlobalHydra.instance().clear()


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
