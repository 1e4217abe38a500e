"""One small interface for parallel work: ``Executor.map(fn, items) -> list`` (and ``imap``,
the same results one by one as they are done, in order).

``fn`` must be a picklable top-level function and ``items`` picklable values; results come back
in the order of ``items``. Backends: ``SerialExecutor`` (in this process), ``LocalExecutor`` (a
process pool on this machine, ``spawn``/``forkserver`` start so torch and procgen are safe in
the workers) and ``RayExecutor`` (a Ray cluster or a local Ray instance; ``pip install
.[distributed]``). ``make_executor("serial"|"local"|"ray", workers)`` picks one, so the same
command scales from a laptop to a cluster. Executors are context managers; ``close()`` stops
their workers; leaving one by an exception (Ctrl-C included) stops them at once. Local workers
ignore SIGINT (a terminal sends it to the whole process group): the parent alone handles Ctrl-C
and stops them, so an interrupted command leaves no worker behind and prints one line.
"""

from __future__ import annotations

import abc
import multiprocessing
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

BACKENDS = ("serial", "local", "ray")


class ExecutorError(ValueError):
    """A bad backend name or worker count, or a missing optional backend. One line."""


class Executor(abc.ABC):
    """``map(fn, items)`` in order; subclasses say where the calls run."""

    workers: int = 1

    @abc.abstractmethod
    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        """[fn(item) for item in items], computed wherever this executor runs calls."""

    def imap(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        """The results of `map` one by one, in order, each as soon as it and those before it
        are done (for progress bars); the default waits for all of them."""
        return iter(self.map(fn, items))

    def close(self) -> None:  # noqa: B027  (a no-op default: serial runs hold nothing)
        """Release the workers (idempotent)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.terminate()
        self.close()

    def terminate(self) -> None:
        """Stop the workers now, abandoning their work (on an error or Ctrl-C)."""
        self.close()


class SerialExecutor(Executor):
    """Runs every call in this process, one after another (the baseline, and for debugging)."""

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        return [fn(item) for item in items]


class LocalExecutor(Executor):
    """A pool of ``max_workers`` processes on this machine, started on first use and kept.

    Started by ``forkserver`` where available, else ``spawn``; never ``fork``, which is unsafe
    after torch or procgen started threads.
    """

    def __init__(self, max_workers: int = 2) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ExecutorError(f"workers must be a positive integer, got {max_workers!r}")
        methods = multiprocessing.get_all_start_methods()
        self.workers = max_workers
        self.context = "forkserver" if "forkserver" in methods else "spawn"
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        return list(self.imap(fn, items))

    def imap(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        if self._pool is None:
            ctx = multiprocessing.get_context(self.context)
            if self.context == "forkserver":
                _start_forkserver_ignoring_interrupts()
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=ctx,
                initializer=signal.signal,  # imports nothing: set before any slow import
                initargs=(signal.SIGINT, signal.SIG_IGN),
            )
        return self._pool.map(fn, items)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def terminate(self) -> None:
        if self._pool is None:
            return
        processes = list((self._pool._processes or {}).values())  # no public way to stop them
        for process in processes:
            process.terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout=5)
        self._pool = None


def _start_forkserver_ignoring_interrupts() -> None:
    """Start the forkserver with SIGINT ignored, so that the workers it forks ignore it from
    their first instruction on (they inherit its handlers), not only once the initializer ran."""
    from multiprocessing import forkserver

    try:
        before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: the initializer alone protects the workers
        return
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, before)


class RayExecutor(Executor):
    """Ray tasks: on the cluster at ``address`` or, without one, a local Ray instance.

    :param workers: CPUs of the local instance it starts (ignored when joining a cluster)
    :param address: e.g. ``"auto"`` or ``"ray://head:10001"``; None: start a local instance
    :param runtime_env: Ray's runtime environment for the workers (e.g. ``{"env_vars":
        {"PYTHONPATH": ...}}`` or ``{"py_modules": [...]}`` so they import ``fn``'s module)
    """

    def __init__(
        self, workers: int = 2, address: str | None = None, runtime_env: dict | None = None
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ExecutorError(
                "the ray backend needs ray: pip install '.[distributed]' (or pip install ray)"
            ) from None
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ExecutorError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs["num_cpus"] = workers
            else:
                kwargs["address"] = address
            if runtime_env:
                kwargs["runtime_env"] = runtime_env
            ray.init(**kwargs)
            self._started = True
        self._remote_cache: dict[Callable, Any] = {}

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        return self._ray.get(self._submit(fn, items))

    def imap(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        return (self._ray.get(ref) for ref in self._submit(fn, items))

    def _submit(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        remote = self._remote_cache.get(fn)
        if remote is None:
            remote = self._remote_cache[fn] = self._ray.remote(num_cpus=1)(fn)
        return [remote.remote(item) for item in items]

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def make_executor(backend: str = "local", workers: int = 2, **kwargs: Any) -> Executor:
    """``"serial"``, ``"local"`` (process pool of ``workers``) or ``"ray"`` (``workers`` CPUs
    of a local Ray instance, or ``address=`` a cluster)."""
    if backend == "serial":
        return SerialExecutor()
    if backend == "local":
        return LocalExecutor(workers, **kwargs)
    if backend == "ray":
        return RayExecutor(workers, **kwargs)
    raise ExecutorError(f"unknown executor {backend!r}; valid: {', '.join(BACKENDS)}")
