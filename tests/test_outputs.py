"""What is written: modes from the umask, reports replaced whole and only with --force, run
directories locked, and re-saved models that carry nothing pickled from their source."""

import json
import os
import shutil
import zipfile
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import stable_baselines3 as sb3
from bad_inputs import payload_pth, rewrite_zip

from agents.fileio import current_umask, write_json
from agents.outputs import DirLockedError, OutputError, lock_dir, swap_in
from interpret.core.report import write_report

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def modes(root):
    return {p.relative_to(root): (p.is_dir(), p.stat().st_mode & 0o777) for p in root.rglob("*")}


def test_a_training_run_is_written_with_the_umask(bad_input_workspace):
    mask = current_umask()
    for path, (is_dir, mode) in modes(bad_input_workspace.run).items():
        assert mode == (0o777 if is_dir else 0o666) & ~mask, path


def test_a_report_is_readable_as_a_whole_under_any_umask(tmp_path):
    before = os.umask(0o027)
    try:
        write_report(tmp_path / "r", "<html>", {"a": 1}, {"x": np.zeros(2)}, {"sub/f.bin": b"1"})
        write_json(tmp_path / "alone.json", {})
    finally:
        os.umask(before)
    found = modes(tmp_path)
    assert found.pop(Path("alone.json")) == (False, 0o640)
    assert {mode for _, mode in found.values()} <= {0o640, 0o750}
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o750


def test_a_report_is_replaced_whole_and_only_when_asked(tmp_path):
    out = tmp_path / "r"
    write_report(out, "<p>old", {"v": 1})
    with pytest.raises(OutputError, match="pass --force"):
        write_report(out, "<p>new", {"v": 2}, replace=False)
    assert json.loads((out / "summary.json").read_text()) == {"v": 1}
    write_report(out, "<p>new", {"v": 2}, replace=True)
    assert json.loads((out / "summary.json").read_text()) == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no staging or .old left


def test_swap_in_never_replaces_a_file(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "target").write_text("mine")
    with pytest.raises(OutputError, match="existing file"):
        swap_in(tmp_path / "new", tmp_path / "target", replace=True)
    assert (tmp_path / "target").read_text() == "mine"


def test_a_locked_directory_refuses_a_second_writer_and_a_refused_run_leaves_nothing(tmp_path):
    run = tmp_path / "deep" / "run"
    with lock_dir(run):
        assert (run / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(DirLockedError, match=f"process {os.getpid()}"), lock_dir(run):
            pass  # flock: another open file description conflicts, even in this process
    assert run.is_dir() and not (run / ".lock").exists()
    fresh = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), lock_dir(fresh):
        raise RuntimeError("bad settings")
    assert not (tmp_path / "a").exists()  # made for the run, removed with it


def test_edit_carries_nothing_pickled_from_its_source(bad_input_workspace, tmp_path):
    from interpret.cli import main

    ws = bad_input_workspace
    source = tmp_path / "run"
    shutil.copytree(ws.coinrun, source)
    marker = tmp_path / "PWNED"
    rewrite_zip(
        ws.coinrun_zip,
        source / "model.zip",
        {"pytorch_variables.pth": payload_pth(marker), "extra.pkl": b"\x80\x04K\x01."},
    )
    np.savez(source / "normalization.npz", ret_mean=np.zeros(1), obj=np.array([{}], dtype=object))
    out = tmp_path / "edited"
    argv = ["edit", str(source), "--features", str(ws.report), "--feature", "0", "--out", str(out)]
    with redirect_stdout(StringIO()) as printed:
        assert main(argv) == 0
    assert not marker.exists()
    assert "not copied: pytorch_variables.pth" in printed.getvalue()
    with zipfile.ZipFile(out / "model.zip") as z:
        assert {"pytorch_variables.pth", "extra.pkl"}.isdisjoint(z.namelist())
        record = json.loads(z.read("rlinterp.json"))
    config = json.loads((out / "config.json").read_text())
    assert len(record["not_copied"]) == 2 and config["not_copied"][:2] == record["not_copied"]
    assert config["not_copied"][2] == "normalization.npz: obj (pickled)"
    assert np.load(out / "normalization.npz").files == ["ret_mean"]
    model = sb3.PPO.load(out / "model.zip", device="cpu")  # plain SB3 still loads it
    assert model.clip_range(1.0) == pytest.approx(0.2)  # a schedule rebuilt, not copied
    assert not marker.exists()


def test_a_resaved_plain_dqn_keeps_its_schedules(tmp_path):
    from tiny_models import MODELS

    import agents

    MODELS["plain-dqn-mlp"]().save(tmp_path / "dqn.zip")
    agents.load(tmp_path / "dqn.zip").save(tmp_path / "copy.zip")
    original, copy = (sb3.DQN.load(tmp_path / n, device="cpu") for n in ("dqn.zip", "copy.zip"))
    assert copy.train_freq == original.train_freq
    assert copy.exploration_schedule(0.5) == original.exploration_schedule(0.5)
    with zipfile.ZipFile(tmp_path / "copy.zip") as z:
        assert json.loads(z.read("rlinterp.json"))["not_copied"] == []
        assert z.read("_stable_baselines3_version").decode().strip() == sb3.__version__
