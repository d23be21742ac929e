"""Shared fixtures."""
import pytest


@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest, and steadiest on a shared machine, on one thread."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
