"""Atomic file writes (a crash never leaves a half-written output behind), with the modes the
user's umask gives, and reading of JSON and ``.npz`` inputs that fails in one line.

``tempfile.mkstemp``/``mkdtemp`` create private files (0600) and directories (0700); what they
stage here is given the umask's mode before it is renamed into place, so a shared report or
run directory is readable by whoever may read its parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


class InputFileError(ValueError):
    """An input file that is missing, truncated, corrupt or of the wrong kind. One line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, else set and restored)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_mode(directory: bool = False) -> int:
    """The mode ``open``/``mkdir`` would give a new file (0666) or directory (0777)."""
    return (0o777 if directory else 0o666) & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    ``suffix`` is kept on the temporary name (some writers, like SB3's zip saver, insist on it).
    The file ends with the umask's mode (not mkstemp's 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def staging_dir(target: str | Path) -> Path:
    """A new hidden directory beside ``target`` (same file system, so it can be renamed onto
    it), with the umask's mode rather than mkdtemp's 0700."""
    target = Path(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    staging.chmod(umask_mode(directory=True))
    return staging


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def read_json_file(path: str | Path, what: str = "JSON file") -> Any:
    """``read_json``, raising `InputFileError` (one line) for a missing or damaged file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InputFileError(f"{path} is not a readable {what} ({_reason(err)})") from None


def read_npz(
    path: str | Path,
    what: str = ".npz file",
    keys: tuple[str, ...] | None = None,
    pickled: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (all, or those of ``keys`` it has), without unpickling;
    `InputFileError` (one line) for a missing, truncated or corrupt file, or one holding
    pickled (object) arrays -- unless ``pickled`` is given: their names go there instead."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise InputFileError(f"{path} is a .npy array, not a {what} (.npz)")
            names = data.files if keys is None else [k for k in keys if k in data.files]
            arrays = {}
            for name in names:
                try:
                    arrays[name] = data[name]
                except ValueError as err:
                    if pickled is None or "allow_pickle" not in str(err):
                        raise
                    pickled.append(name)
            return arrays
    except InputFileError:
        raise
    except FileNotFoundError:
        raise InputFileError(f"{what} not found: {path}") from None
    # what numpy's npz reader raises for a damaged file: zipfile, zlib (a corrupt deflate
    # stream), a truncated stream
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise InputFileError(f"{path} is not a readable {what} ({_reason(err)})") from None


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
