"""Fixtures shared by several test files."""

import gc

import pytest
import torch


def pytest_runtest_setup(item):
    """Collect the previous tests' garbage before each test. A procgen env that nobody closed
    is closed by gym3's ``__del__`` through cffi, which takes the lock that ``ffi.dlopen``
    holds while a new env is made: when the cycle collector runs inside that dlopen, the
    process deadlocks (seen in a full run). Tests' models keep their envs open (SB3 models
    are reference cycles), so their leftovers are collected here, outside any dlopen."""
    gc.collect()


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


@pytest.fixture(scope="module")
def separate_trunk_model(tmp_path_factory):
    """The zip of a tiny untrained PPO with separate policy and value trunks (the zoo's CoinRun
    run's layout: ``pi_features_extractor.*`` and ``vf_features_extractor.*``)."""
    from tiny_models import untrained_model

    directory = tmp_path_factory.mktemp("separate")
    return untrained_model("ours-ppo-interpretable-separate", directory)
