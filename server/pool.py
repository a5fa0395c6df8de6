"""Bounded execution of blocking library work (plans, re-plans, coverage) off the event loop.

The event loop must stay free for streams: every solve runs in a worker thread. The pool admits
at most ``workers + queue`` solves at once; one more is refused with
:class:`ServerOverloadedError` (RESOURCE_EXHAUSTED) instead of queueing without bound. A slot is
held until the worker thread really finishes, even when the caller gave up at its deadline, so the
bound is on work actually running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from commap.errors import SolverTimeoutError

__all__ = ["ServerOverloadedError", "SolvePool"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class ServerOverloadedError(Exception):
    """The server is at its concurrency limit; the client should retry later."""


class SolvePool:
    """A thread pool with admission control.

    Parameters
    ----------
    workers : solves running at once.
    queue : solves allowed to wait for a worker.
    """

    def __init__(self, workers: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="commap-solve")
        self._capacity = workers + queue
        self._in_flight = 0  # touched only on the event loop thread

    @property
    def in_flight(self) -> int:
        """Solves admitted and not finished."""
        return self._in_flight

    @property
    def capacity(self) -> int:
        """Most solves admitted at once."""
        return self._capacity

    def _release(self, future: asyncio.Future[Any]) -> None:
        self._in_flight -= 1
        if not future.cancelled() and future.exception() is not None:
            # retrieved here so an abandoned (timed-out) solve's error is logged, not warned about
            log.debug("abandoned solve ended with %r", future.exception())

    async def run(
        self, func: Callable[[], T], *, timeout_s: float | None = None, what: str = "solve"
    ) -> T:
        """Run ``func()`` in a worker thread and await its result.

        Raises
        ------
        ServerOverloadedError
            When ``workers + queue`` solves are already admitted.
        SolverTimeoutError
            When ``timeout_s`` passes first (the thread finishes in the background).
        """
        if self._in_flight >= self._capacity:
            raise ServerOverloadedError(
                f"server busy: {self._in_flight} {what}s in progress (limit {self._capacity}); retry later"
            )
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        future = loop.run_in_executor(self._executor, func)
        future.add_done_callback(self._release)
        try:
            # shield: a timeout or cancellation abandons the wait, not the slot accounting
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            raise SolverTimeoutError(f"{what} did not finish within {timeout_s:.2f} s") from None

    def shutdown(self) -> None:
        """Stop accepting work; running threads finish on their own."""
        self._executor.shutdown(wait=False, cancel_futures=True)
