"""bf16 hardware detection and the warning when bf16 would be emulated (many times slower):
checked against the CPU's own flags in /proc/cpuinfo, and through agents.load and train.py."""

import os
import warnings
from pathlib import Path

import pytest
from tiny_models import saved_model

import agents
import agents.precision
import train as train_cli
from agents.precision import has_bf16_units, warn_if_emulated
from agents.runtime import one_line_warnings
from agents.training import machine_name

CPUINFO = Path("/proc/cpuinfo")


def _cpu_flags() -> set[str]:
    line = next(x for x in CPUINFO.read_text().splitlines() if x.startswith("flags"))
    return set(line.split(":", 1)[1].split())


@pytest.mark.skipif(not CPUINFO.exists(), reason="needs Linux's /proc/cpuinfo")
def test_bf16_units_and_machine_name_match_the_cpu_flags():
    flags = _cpu_flags()
    expected = "avx512_bf16" in flags or "amx_bf16" in flags
    assert has_bf16_units("cpu") is expected
    name = machine_name()
    assert name.startswith(f"{os.cpu_count()} x ")
    assert (", bf16)" in name) is expected
    isa = "AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None
    if isa is not None:
        assert f"({isa}" in name


@pytest.mark.parametrize("units", [False, True])
def test_bf16_warns_only_without_units(monkeypatch, units):
    monkeypatch.setattr(agents.precision, "has_bf16_units", lambda device="cpu": units)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_emulated("fp32")
        warn_if_emulated("bf16")
    messages = [str(w.message) for w in caught]
    assert len(messages) == (0 if units else 1)
    if not units:
        assert caught[0].category is RuntimeWarning and "--precision fp32" in messages[0]


def test_load_warns_when_bf16_is_emulated(monkeypatch, tmp_path):
    _, path = saved_model("ours-ppo-interpretable", tmp_path)
    monkeypatch.setattr(agents.precision, "has_bf16_units", lambda device="cpu": False)
    with pytest.warns(RuntimeWarning, match="slower than fp32"):
        view = agents.load(path, precision="bf16")
    assert view.precision == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agents.load(path)  # fp32: no warning


def test_train_warns_when_bf16_is_emulated(monkeypatch, tmp_path, one_torch_thread):
    monkeypatch.setattr(agents.precision, "has_bf16_units", lambda device="cpu": False)
    argv = ["ppo", "--env", "procgen:coinrun", "--arch", "nature", "--timesteps", "32",
            "--n-envs", "2", "--n-steps", "16", "--batch-size", "32", "--eval-episodes", "0",
            "--no-progress", "--precision", "bf16", "--out", str(tmp_path / "run")]  # fmt: skip
    with pytest.warns(RuntimeWarning, match="no bf16 units"):
        assert train_cli.main(argv) == 0
    assert (tmp_path / "run" / "model.zip").exists()


def test_command_line_warnings_are_one_line(monkeypatch):
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after
    one_line_warnings("train.py")
    text = warnings.formatwarning("bf16 is slow here", RuntimeWarning, __file__, 1)
    assert text == "train.py: warning: bf16 is slow here\n"
