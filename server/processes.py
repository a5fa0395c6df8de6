"""One-worker child processes for CPU-heavy background work (uploads, fleet fusion).

Threads share the GIL with the solve threads, so work on them slows planning however low their
priority. A :class:`WorkerProcess` runs such work in a child process of its own instead: spawned
(a fresh interpreter, nothing of the server's state or threads inherited), at a lower CPU priority
(niceness), killed by the kernel when the server dies (so that no orphan goes on writing after a
crash), and replaced when it dies on its own. Work given to a process that dies before answering
fails with :class:`WorkerLostError` (UNAVAILABLE: the caller retries); work given after that goes
to a new process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["LOG_FORMAT", "WorkerLostError", "WorkerProcess", "limit_malloc_arenas"]

log = logging.getLogger(__name__)

T = TypeVar("T")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Linux prctl option: a signal the kernel sends this process when its parent dies
_PR_SET_PDEATHSIG = 1
# glibc mallopt option: most malloc arenas (heaps) the process keeps
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Let glibc's malloc keep at most ``arenas`` heaps; True if it took the setting.

    By default every thread that meets a busy heap gets one of its own (up to 8 per core), and
    each keeps the memory its large, short-lived arrays (corridors, quality matrices) freed:
    a server's solve threads held about 110 MiB more after a few hundred varied plans. The
    threads take turns on the GIL anyway, so sharing two heaps costs them no measurable time.
    Call it at start, before threads allocate; does nothing where malloc is not glibc's, or
    where the operator set ``MALLOC_ARENA_MAX`` (glibc's own variable) in the environment.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators differ
        return False


class WorkerLostError(Exception):
    """A worker process ended (crash, kill, out of memory) before it answered: retry the call."""


def _child_setup(parent_pid: int, niceness: int, log_level: int, preload: tuple[str, ...]) -> None:
    """In the child: log like the server, yield the CPU to it, die with it, import its work."""
    # Ctrl-C reaches the whole process group: the server shuts its children down itself, so a
    # child interrupted here would only print a KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    with contextlib.suppress(OSError):  # not permitted: run at the server's priority
        os.nice(niceness)
    with contextlib.suppress(OSError, AttributeError):  # Linux only
        # a SIGKILLed server must not leave a writer behind it, storing batches nobody acks
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the server died before the prctl took effect
        os._exit(1)
    for module in preload:  # seconds of imports (pandas, pyarrow): before the first job
        importlib.import_module(module)


class WorkerProcess:
    """A child process running one job at a time, restarted when it dies.

    Parameters
    ----------
    name : what the process does (in log lines and errors), e.g. ``"upload"``.
    niceness : how much lower the child's CPU priority is than the server's.
    preload : modules the child imports when it starts (those of its jobs).

    Examples
    --------
    >>> worker = WorkerProcess("doc")
    >>> worker.call(pow, 2, 10)
    1024
    >>> worker.shutdown()
    """

    def __init__(self, name: str, *, niceness: int = 10, preload: tuple[str, ...] = ()) -> None:
        self.name = name
        self._niceness = niceness
        self._preload = preload
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._started_future: Future[int] | None = None
        self._closed = False
        self.pid: int | None = None  # of the running child, once it has answered

    def _new_executor(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_child_setup,
            initargs=(
                os.getpid(),
                self._niceness,
                logging.getLogger().getEffectiveLevel(),
                self._preload,
            ),
        )
        # the first job spawns the child; its pid is logged (operators, tests find it there)
        self._started_future = executor.submit(os.getpid)
        self._started_future.add_done_callback(self._started)
        return executor

    def _started(self, future: Future[int]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        self.pid = future.result()
        log.info("%s process %d started", self.name, self.pid)

    def start(self) -> None:
        """Spawn the child now rather than at the first job (it takes a second to import)."""
        with self._lock:
            if self._executor is None and not self._closed:
                self._executor = self._new_executor()

    async def ready(self) -> None:
        """Wait until the child has started and imported its modules (logged if it failed)."""
        self.start()
        if self._started_future is not None:
            with contextlib.suppress(BrokenProcessPool):  # the next job starts a new one
                await asyncio.wrap_future(self._started_future)

    def _submit(
        self, func: Callable[..., T], args: tuple[Any, ...]
    ) -> tuple[Future[T], ProcessPoolExecutor]:
        with self._lock:
            if self._closed:
                raise WorkerLostError(f"the {self.name} process is shut down")
            if self._executor is None:
                self._executor = self._new_executor()
            try:
                return self._executor.submit(func, *args), self._executor
            except BrokenProcessPool:  # it died while idle: nothing of this job was sent
                self._replace_locked(self._executor)
                assert self._executor is not None
                return self._executor.submit(func, *args), self._executor

    def _replace_locked(self, broken: ProcessPoolExecutor) -> None:
        if self._executor is not broken or self._closed:
            return  # another caller replaced it already
        log.error("%s process %s ended unexpectedly: starting a new one", self.name, self.pid)
        broken.shutdown(wait=False, cancel_futures=True)
        self.pid = None
        self._executor = self._new_executor()

    def _lost(self, broken: ProcessPoolExecutor) -> WorkerLostError:
        with self._lock:
            self._replace_locked(broken)
        return WorkerLostError(
            f"the server's {self.name} process ended before it answered; retry the call"
        )

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in the child, awaited (arguments and result are pickled).

        Raises
        ------
        WorkerLostError
            The child died before answering (a new one takes the next job).
        """
        future, executor = self._submit(func, args)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            raise self._lost(executor) from None

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in the child, blocking (for threads); raises as :meth:`run`."""
        future, executor = self._submit(func, args)
        try:
            return future.result()
        except BrokenProcessPool:
            raise self._lost(executor) from None

    def shutdown(self) -> None:
        """Take no more jobs; the child finishes the one it runs, then exits."""
        with self._lock:
            self._closed = True
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
