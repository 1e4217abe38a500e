"""The harness of the bad-input tables (``test_bad_inputs*.py``): a shared workspace of tiny
real files, damaged copies made on demand, and `check`, which runs one case in this process and
asserts what every bad input must give: the exit status, one line on stderr (no traceback, no
warning), and nothing written or replaced anywhere the command could write.

A case is ``Case(id, cli, argv, match)``: ``cli`` is ``"interpret"`` or ``"train"``; ``argv`` may
name ``{ws.NAME}`` (a workspace file, see `Workspace`), ``{tmp}`` (the case's own directory, the
working directory while it runs), ``{out}`` (``{tmp}/out``, not created) and ``{bad:KIND}`` (a
damaged file made in ``{tmp}``, see `BAD`); ``setup(tmp, ws)`` may prepare more in ``{tmp}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

COINRUN = "procgen:coinrun"
QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


@dataclass
class Case:
    id: str
    cli: str  # "interpret" or "train"
    argv: list[str]
    match: str = "error"
    code: int = 2
    setup: Callable[[Path, Any], None] | None = None
    interrupt: str | None = None  # "module:attribute" replaced by a function raising Ctrl-C
    locked: str | None = None  # a directory (an argv placeholder) another process holds locked
    may_change: tuple[str, ...] = ()  # globs (under {tmp}) a case may rewrite, e.g. a resumed log

    def __str__(self) -> str:
        return self.id


# -- the workspace: one of each kind of good input ------------------------------------------
class Workspace:
    """Tiny real inputs, made once per session:

    coinrun: a PPO run directory (interpretable CNN, CoinRun easy, model.zip with our record)
    coinrun_zip: its model.zip;  pong: a DQN zip (NatureCNN, Pong);  report: a features report
    at 2b of coinrun (4 features);  traj: a CoinRun trajectory;  run: a finished CartPole PPO
    run of train.py with checkpoints;  wm: a World Models run's config.json only;  file: a
    regular file.
    """

    def __init__(self, root: Path) -> None:
        from tiny_models import MODELS

        from agents.sb3_zip import write_sb3_zip

        self.root = root
        self.coinrun = root / "coinrun"
        self.coinrun.mkdir()
        self.coinrun_zip = self.coinrun / "model.zip"
        MODELS["ours-ppo-interpretable"]().save(self.coinrun_zip)
        record = {"algo": "ppo", "env_id": COINRUN, "env_kwargs": {"distribution_mode": "easy"}}
        extra = {**record, "arch": "interpretable"}
        write_sb3_zip(self.coinrun_zip, self.coinrun_zip, extra=extra)
        (self.coinrun / "config.json").write_text(json.dumps(record))
        self.pong = root / "pong.zip"
        MODELS["ours-dqn-nature"]().save(self.pong)
        self.report = write_features_report(root / "report", channels=32)
        self.report16 = write_features_report(root / "report16", channels=16)
        self.traj = root / "traj.npz"
        trajectory((64, 64, 3)).save(self.traj)
        self.pong_traj = root / "pong-traj.npz"
        trajectory((84, 84, 4), n_actions=6).save(self.pong_traj)
        self.run = root / "run"
        self._train_run(self.run)
        self.wm = root / "wm"
        self.wm.mkdir()
        (self.wm / "config.json").write_text(
            json.dumps({"algo": "worldmodel", "env_id": COINRUN, "env_kwargs": {}})
        )
        self.file = root / "a-file"
        self.file.write_text("not a directory\n")

    @staticmethod
    def _train_run(out: Path) -> None:
        import train

        argv = ["ppo", "--env", "CartPole-v1", "--timesteps", "64", "--n-envs", "2"]
        argv += ["--n-steps", "16", "--batch-size", "32", "--n-epochs", "1", "--seed", "3"]
        argv += ["--eval-episodes", "0", "--checkpoint-minutes", "0", "--no-progress"]
        with contextlib.redirect_stdout(io.StringIO()):
            assert train.main([*argv, "--out", str(out)]) == 0
        assert (out / "checkpoints" / "latest.json").is_file()


def write_features_report(path: Path, channels: int, k: int = 4) -> Path:
    """A features report as ``attribute`` writes one (what ``edit``/``audit`` read)."""
    path.mkdir()
    directions = np.random.default_rng(0).random((k, channels)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    summary = {
        "layer": "2b",
        "target": "value",
        "n_steps": 10,
        "env_id": COINRUN,
        "env_options": {"distribution_mode": "easy"},
        "layer_shape": [channels, 32, 32],
        "directions": directions.tolist(),
        "labels": ["saw", "", "", ""][:k],
    }
    (path / "summary.json").write_text(json.dumps(summary))
    np.savez_compressed(path / "arrays.npz", directions=directions)
    return path


def trajectory(shape: tuple[int, ...], steps: int = 8, n_actions: int = 15) -> Any:
    from interpret.core.trajectory import Trajectory

    rng = np.random.default_rng(0)
    dones = np.zeros(steps, bool)
    dones[-1] = True
    return Trajectory(
        observations=rng.integers(0, 256, (steps, *shape), dtype=np.uint8),
        actions=rng.integers(0, n_actions, steps),
        rewards=np.zeros(steps, np.float32),
        dones=dones,
        values=np.zeros(steps, np.float32),
        logits=np.zeros((steps, n_actions), np.float32),
        level_seeds=np.zeros(steps, np.int64),
        level_complete=np.zeros(steps, bool),
        advantages=np.zeros(steps, np.float32),
        metadata={"env_id": COINRUN},
    )


# -- damaged files ----------------------------------------------------------------------------
class Payload:
    """Pickles to a call of os.system: proof that nothing was unpickled is that it never ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def payload_pth(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": Payload(marker)}, buffer)
    return buffer.getvalue()


def rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes | None], deflate: bool = False):
    """A copy of the zip `src` with members replaced (None: removed)."""
    compression = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w", compression) as b:
        for info in a.infolist():
            if info.filename in replace:
                if replace[info.filename] is not None:
                    b.writestr(info.filename, replace[info.filename])
            else:
                b.writestr(info.filename, a.read(info))
        for name, data in replace.items():
            if name not in a.namelist() and data is not None:
                b.writestr(name, data)
    return dst


def corrupt_deflate(src: Path, dst: Path, member: str) -> Path:
    """A deflated copy of `src` whose `member` has a broken deflate stream (zlib.error when
    read: its first block claims the invalid block type 3)."""
    rewrite_zip(src, dst, {}, deflate=True)
    with zipfile.ZipFile(dst) as z:
        info = z.getinfo(member)
    raw = bytearray(dst.read_bytes())
    offset = info.header_offset  # the local header: 30 bytes, then the name and extra field
    name_len = int.from_bytes(raw[offset + 26 : offset + 28], "little")
    extra_len = int.from_bytes(raw[offset + 28 : offset + 30], "little")
    raw[offset + 30 + name_len + extra_len] = 0xFF
    dst.write_bytes(bytes(raw))
    return dst


def _truncated(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: len(src.read_bytes()) // 2])
    return dst


def _object_npz(dst: Path, **extra: Any) -> Path:
    np.savez(dst, **extra, obj=np.array([{"a": 1}], dtype=object))
    return dst


# kind -> (tmp, ws) -> path of a damaged (or foreign) file or directory in tmp
BAD: dict[str, Callable[[Path, Workspace], Path]] = {
    "missing": lambda tmp, ws: tmp / "no-such-model.zip",
    "empty": lambda tmp, ws: _write(tmp / "empty.zip", b""),
    "text": lambda tmp, ws: _write(tmp / "text.zip", b"hello, I am not a zip\n"),
    "truncated": lambda tmp, ws: _truncated(ws.coinrun_zip, tmp / "truncated.zip"),
    "no-data": lambda tmp, ws: rewrite_zip(ws.coinrun_zip, tmp / "no-data.zip", {"data": None}),
    "bad-json": lambda tmp, ws: rewrite_zip(ws.coinrun_zip, tmp / "bad.zip", {"data": b"{nope"}),
    "deflate": lambda tmp, ws: corrupt_deflate(ws.coinrun_zip, tmp / "deflate.zip", "data"),
    "deflate-pth": lambda tmp, ws: corrupt_deflate(ws.coinrun_zip, tmp / "dpth.zip", "policy.pth"),
    "payload": lambda tmp, ws: rewrite_zip(
        ws.coinrun_zip, tmp / "payload.zip", {"policy.pth": payload_pth(tmp / "PWNED")}
    ),
    "empty-dir": lambda tmp, ws: _mkdir(tmp / "empty-dir"),
    "zoo": lambda tmp, ws: Path("zoo:no-such-agent"),
    "report-dir": lambda tmp, ws: ws.report,
    "text-npz": lambda tmp, ws: _write(tmp / "text.npz", b"not an npz\n"),
    "object-npz": lambda tmp, ws: _object_npz(tmp / "object.npz"),
    "other-npz": lambda tmp, ws: _npz(tmp / "other.npz", x=np.zeros(3)),
    "empty-traj": lambda tmp, ws: _empty_trajectory(tmp / "empty-traj.npz"),
    "deflate-npz": lambda tmp, ws: corrupt_deflate(ws.traj, tmp / "dnpz.npz", "observations.npy"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("no model here\n")
    return path


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _empty_trajectory(path: Path) -> Path:
    arrays = {name: np.zeros(0) for name in ("actions", "rewards", "dones", "values", "logits")}
    arrays |= {n: np.zeros(0) for n in ("level_seeds", "level_complete", "advantages")}
    np.savez(path, observations=np.zeros((0, 64, 64, 3), np.uint8), metadata=np.array("{}"),
             **arrays)  # fmt: skip
    return path


# -- running one case -------------------------------------------------------------------------
def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under `roots` with its kind, size, mode and content hash (files)."""
    seen: dict[str, tuple] = {}
    for root in roots:
        for path in [root, *sorted(root.rglob("*"))] if root.exists() else []:
            st = path.lstat()
            digest = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else ""
            seen[str(path)] = (
                path.is_dir(),
                st.st_size if path.is_file() else 0,
                st.st_mode,
                digest,
            )
    return seen


def fill(arg: str, tmp: Path, ws: Workspace) -> str:
    def one(match: re.Match) -> str:
        key = match.group(1)
        if key == "tmp":
            return str(tmp)
        if key == "out":
            return str(tmp / "out")
        if key.startswith("ws."):
            return str(getattr(ws, key[3:]))
        if key.startswith("bad:"):
            if key not in _made:
                _made[key] = BAD[key[4:]](tmp, ws)
            return str(_made[key])
        raise KeyError(key)

    return re.sub(r"\{([\w.:-]+)\}", one, arg)


_made: dict[str, Path] = {}


@contextlib.contextmanager
def held_lock(directory: Path):
    """Another process holding `directory`'s lock (as a writer would) while the block runs."""
    directory.mkdir(parents=True, exist_ok=True)
    code = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(directory / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def visible_lines(err: str) -> list[str]:
    """The lines of `err` a terminal shows: a progress bar redraws its line after each carriage
    return, and one that is cleared (``leave=False``) leaves nothing."""
    visible = (line.rsplit("\r", 1)[-1].strip() for line in err.split("\n"))
    return [line for line in visible if line]


def invoke(cli: str, argv: list[str]) -> int:
    if cli == "interpret":
        from interpret.cli import main
    else:
        from train import main
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's own errors
        return int(exit_.code or 0)


def check(case: Case, tmp: Path, ws: Workspace, capfd, monkeypatch) -> None:
    """Run `case` and assert the contract of a bad input (see the module docstring)."""
    _made.clear()
    monkeypatch.chdir(tmp)
    monkeypatch.setenv("RLINTERP_CACHE", str(tmp / "cache"))
    if case.setup is not None:
        case.setup(tmp, ws)
    argv = [fill(a, tmp, ws) for a in case.argv]
    if case.interrupt:
        module, _, name = case.interrupt.partition(":")

        def interrupted(*_args, **_kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(f"{module}.{name}", interrupted)
    locked = fill(case.locked, tmp, ws) if case.locked else None
    with held_lock(Path(locked)) if locked else contextlib.nullcontext():
        before = snapshot(tmp, ws.root)
        capfd.readouterr()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = invoke(case.cli, argv)
        after = snapshot(tmp, ws.root)
    err = capfd.readouterr().err
    shown = [w for w in caught if not issubclass(w.category, QUIET_WARNINGS)]
    lines = visible_lines(err) + [f"warning: {w.message}" for w in shown]
    assert code == case.code, f"exit {code}, stderr: {err}"
    assert len(lines) == 1, f"not one line: {lines}"
    assert "Traceback" not in err
    assert case.match in lines[0], lines[0]
    assert not (tmp / "PWNED").exists(), "a pickle payload ran"
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    changed = {p for p in changed if not any(Path(p).match(g) for g in case.may_change)}
    assert not changed, f"written or replaced: {sorted(changed)[:5]}"
