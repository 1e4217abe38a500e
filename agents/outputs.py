"""Outputs: checked before any work, locked while written, swapped in whole.

- ``check_output(path, force=...)``: refuse, in one line, an output directory that is an
  existing file, that exists (without ``force``), that is being written by another process,
  or whose location cannot be created or written; run before anything expensive.
- ``lock_dir(path)``: hold ``path/.lock`` (``fcntl.flock``, released when the process ends,
  however it ends) while a process writes a run directory; a second writer gets `DirLockedError`.
- ``swap_in(staging, target, replace=...)``: move a finished staging directory onto
  ``target``: atomically exchanged with an existing one (``renameat2(RENAME_EXCHANGE)`` on
  Linux), never replacing one that appeared meanwhile unless ``replace``.

    check_output(out, force=args.force)          # before loading a model
    staging = staging_dir(out)                   # agents.fileio
    ...write into staging...
    swap_in(staging, out, replace=args.force)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from agents.fileio import umask_mode

LOCK_FILE = ".lock"


class OutputError(ValueError):
    """An output that cannot or must not be written. One line."""


class DirLockedError(OutputError):
    """A directory another process is writing."""


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    return next(p for p in (path, *path.parents) if p.exists())  # "/" exists


def is_vacant(path: Path) -> bool:
    """True for a directory holding nothing but (maybe) a stale lock file."""
    try:
        return {p.name for p in path.iterdir()} <= {LOCK_FILE}
    except OSError:
        return False


def check_writable_dir(path: str | Path, flag: str = "--out") -> None:
    """That ``path`` (a directory, existing or not) can be created and written in."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is an existing file, not a directory")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise OutputError(f"{flag} {path} cannot be created: {base} is a file, not a directory")
    try:  # as root os.access says yes to everything; a real file tells
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(
            f"{flag} {path} cannot be written: {base} is not writable ({err.strerror})"
        ) from None


def check_output(path: str | Path, *, force: bool = False, flag: str = "--out") -> Path:
    """Refuse an output directory before any work (see the module docstring); returns it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(
            f"{flag} {path} is an existing file; pick a directory name that does not exist"
        )
    if path.is_dir() and not is_vacant(path):
        if not force:
            raise OutputError(f"{flag} {path} already exists; pass --force to replace it")
        check_not_locked(path)
    check_writable_dir(path.parent if path.is_dir() else path, flag)
    return path


def check_not_locked(path: Path) -> None:
    """`DirLockedError` if another process holds ``path``'s lock (nothing is created)."""
    lock = path / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return  # no lock file: nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DirLockedError(_locked_message(path, fd)) from None
    finally:
        os.close(fd)


def _locked_message(path: Path, fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        pid = ""
    who = f"process {pid}" if pid.isdigit() else "another process"
    return f"{path} is being written by {who}; wait for it to finish or pick another --out"


@contextlib.contextmanager
def lock_dir(path: str | Path, *, create: bool = True) -> Iterator[Path]:
    """Hold ``path``'s lock while the block runs; `DirLockedError` if another process has it.

    With ``create``, a missing directory (and its parents) is made; if the block fails
    (including Ctrl-C) while it still holds nothing but the lock, what was made is removed, so
    a refused run leaves nothing behind. The lock file is removed on release.
    """
    path = Path(path)
    made = _make_dirs(path) if create else []
    try:
        fd = _acquire(path)
    except BaseException:
        _remove_made(made)
        raise
    try:
        yield path
    except BaseException:
        _release(path, fd)
        if made and is_vacant(path):
            _remove_made(made)
        raise
    else:
        _release(path, fd)


def _make_dirs(path: Path) -> list[Path]:
    probe = Path(os.path.abspath(path))
    missing = [p for p in (probe, *probe.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{path} is an existing file, not a directory") from None
    except OSError as err:
        raise OutputError(f"cannot create {path} ({err.strerror})") from None
    return missing  # deepest first


def _remove_made(made: list[Path]) -> None:
    for directory in made:
        with contextlib.suppress(OSError):
            (directory / LOCK_FILE).unlink(missing_ok=True)
            directory.rmdir()


def _acquire(path: Path) -> int:
    lock = path / LOCK_FILE
    for _ in range(10):  # the file may be unlinked by its releasing holder between open and lock
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, umask_mode())
        except OSError as err:
            raise OutputError(f"cannot lock {path} ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = _locked_message(path, fd)
            os.close(fd)
            raise DirLockedError(message) from None
        if _same_file(fd, lock):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)
    raise DirLockedError(f"{path}: cannot take its lock (it keeps changing)")


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _release(path: Path, fd: int) -> None:
    lock = path / LOCK_FILE
    if _same_file(fd, lock):  # still ours (a swapped-in directory has none, or another's)
        with contextlib.suppress(OSError):
            lock.unlink()
    os.close(fd)


# -- swapping a finished directory into place ------------------------------------------------
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """Linux renameat2; False where the C library or the file system lacks it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return False
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    function.argtypes += [ctypes.c_uint]
    result = function(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(dst))


def swap_in(staging: Path, target: Path, *, replace: bool, locked: bool = False) -> None:
    """Move the finished directory ``staging`` to ``target``.

    A ``target`` that exists (and is not vacant) is replaced only with ``replace``: exchanged
    atomically with ``staging``, whose path then holds the old one, which is removed. Its lock
    is taken first (unless the caller holds it: ``locked``), so a directory that another
    process is writing is never replaced.
    """
    staging, target = Path(staging), Path(target)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target} is an existing file; nothing was replaced")
    if target.is_dir():
        if not replace and not is_vacant(target):
            raise OutputError(
                f"{target} appeared while this command ran (another writer?); nothing was "
                "replaced (pass --force to replace it)"
            )
        guard = contextlib.nullcontext() if locked else lock_dir(target, create=False)
        with guard:
            if not _renameat2(staging, target, _RENAME_EXCHANGE):
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old",
                                            dir=target.parent))  # fmt: skip
                os.replace(target, old / "dir")
                os.replace(staging, target)
                staging = old
        shutil.rmtree(staging, ignore_errors=True)  # now the old directory
        return
    try:
        moved = _renameat2(staging, target, _RENAME_NOREPLACE)
    except FileExistsError:
        raise OutputError(f"{target} appeared while this command ran; nothing replaced") from None
    if not moved:
        os.replace(staging, target)
