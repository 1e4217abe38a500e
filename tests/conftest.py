"""Fixtures shared by several test files."""

import pytest
import torch


@pytest.fixture()
def one_torch_thread():
    """One torch thread for the test (tiny batches run many times faster that way on a shared
    2-core machine); the previous setting is restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
