"""Cooperative cancellation of long planning work (solves, map sampling).

A front door that must bound a request (a call deadline, a client that went away) runs the work
inside :func:`stop_when` with a ``should_stop`` callable; the long loops of the library call
:func:`check_stop` every few hundred steps and raise :class:`~commap.errors.SolverTimeoutError`
once ``should_stop()`` is true, so abandoned work ends within a fraction of a second instead of
running on. Outside :func:`stop_when` nothing is ever stopped (the CLI and notebooks).

The callable lives in a context variable: it follows the work without being threaded through
every solver's signature, and each thread (each request) has its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from commap.errors import SolverTimeoutError

__all__ = ["StopWatcher", "check_stop", "current_stop", "stop_when"]

_SHOULD_STOP: ContextVar[Callable[[], bool] | None] = ContextVar("should_stop", default=None)


@contextmanager
def stop_when(should_stop: Callable[[], bool] | None) -> Iterator[None]:
    """Let :func:`check_stop` stop the work done inside the block once ``should_stop()`` is true.

    Examples
    --------
    >>> with stop_when(lambda: True):
    ...     check_stop("a solve")
    Traceback (most recent call last):
    ...
    commap.errors.SolverTimeoutError: a solve stopped: its request was cancelled or ran out of time
    >>> with stop_when(None):  # nothing to stop on
    ...     check_stop("a solve")
    >>> check_stop("outside any block")
    """
    token = _SHOULD_STOP.set(should_stop)
    try:
        yield
    finally:
        _SHOULD_STOP.reset(token)


def current_stop() -> Callable[[], bool] | None:
    """The ``should_stop`` callable of the enclosing :func:`stop_when` block (None: none)."""
    return _SHOULD_STOP.get()


def check_stop(what: str = "planning") -> None:
    """Raise :class:`~commap.errors.SolverTimeoutError` if the enclosing request is stopped."""
    should_stop = _SHOULD_STOP.get()
    if should_stop is not None and should_stop():
        raise SolverTimeoutError(f"{what} stopped: its request was cancelled or ran out of time")


class StopWatcher:
    """Call ``on_stop`` (e.g. a CP-SAT solver's ``stop_search``) once the request is stopped.

    For work that cannot check by itself (a native solver): a daemon thread polls the enclosing
    block's ``should_stop`` every ``interval_s`` while the ``with`` block runs. Without an
    enclosing :func:`stop_when` it does nothing.

    Examples
    --------
    >>> import time
    >>> stopped = []
    >>> with stop_when(lambda: True), StopWatcher(lambda: stopped.append(1), interval_s=0.01):
    ...     time.sleep(0.1)
    >>> stopped
    [1]
    """

    def __init__(self, on_stop: Callable[[], object], *, interval_s: float = 0.02) -> None:
        self._on_stop = on_stop
        self._interval_s = interval_s
        self._should_stop = current_stop()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch(self) -> None:
        assert self._should_stop is not None
        while not self._done.wait(self._interval_s):
            if self._should_stop():
                self._on_stop()
                return

    def __enter__(self) -> StopWatcher:
        if self._should_stop is not None:
            self._thread = threading.Thread(target=self._watch, name="commap-stop", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
