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


@pytest.fixture(scope="session")
def bad_input_workspace(tmp_path_factory):
    """The tiny real inputs of the bad-input tables (``tests/bad_inputs.py``), made once."""
    from bad_inputs import Workspace

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Workspace(tmp_path_factory.mktemp("bad-inputs"))
    finally:
        torch.set_num_threads(before)
