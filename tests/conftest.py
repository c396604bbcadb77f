"""Fixtures shared by the unit tests."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from threads: on a busy 2-core machine torch then spends most of its time
    handing work between threads (measured: 89 s instead of 3 s for the optimiser tests)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
