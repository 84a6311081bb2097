import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is faster, and the test machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
