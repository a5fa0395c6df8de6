"""Bounded, cancellable execution of blocking library work off the event loop.

The event loop must stay free for streams: every solve (plan, re-plan, coverage batch) runs in
a worker thread; solves estimated to be long run on their own threads (one fewer than the
workers), so a few long plans never keep short ones waiting. The pool admits at most ``workers + queue`` solves at once, and at most
``per_client`` of them from one client; one more is refused with
:class:`ServerOverloadedError` (RESOURCE_EXHAUSTED) instead of queueing without bound, so one
client cannot take every slot.

Every solve runs with a stop flag (:mod:`commap.plan.cancel`): it is raised when the call's
time is up (its deadline, else the server's work budget ``max_work_s``) or the caller goes
away, and the library's cooperative checks (DP loops, CP-SAT's stop, map sampling in slices)
end the work within a fraction of a second. A slot is held until the worker thread really
finishes, so the bounds are on work actually running, and abandoned work does not linger.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from commap.errors import SolverTimeoutError
from commap.plan.cancel import stop_when

__all__ = [
    "ServerOverloadedError",
    "SolvePool",
    "StopFlag",
    "WorkTooLargeError",
    "lower_thread_priority",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class ServerOverloadedError(Exception):
    """The server is at its concurrency limit; the client should retry later."""


def lower_thread_priority(niceness: int = 10) -> None:
    """Make the calling thread yield the CPU to solves (Linux: threads have their own nice value).

    Used as the initializer of background threads (the fleet refresh scheduler), so that their
    work takes the CPU time solves leave; does nothing where the platform does not allow it.
    Threads still share the GIL with solves: CPU-heavy work goes to a child process instead
    (:mod:`server.processes`).
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        log.debug("could not lower the priority of thread %s", threading.current_thread().name)


class WorkTooLargeError(ServerOverloadedError):
    """A request's estimated work exceeds the time it has (RESOURCE_EXHAUSTED, with the limit)."""


class StopFlag:
    """When one solve must stop: raised by hand, or once its time budget is spent.

    Examples
    --------
    >>> flag = StopFlag(budget_s=60.0)
    >>> flag()
    False
    >>> flag.set()
    >>> flag()
    True
    >>> StopFlag(budget_s=0.0)()
    True
    """

    def __init__(self, budget_s: float | None) -> None:
        self._event = threading.Event()
        self._until = None if budget_s is None else time.monotonic() + budget_s
        self.stopped_at: float | None = None

    def set(self) -> None:
        """Stop now."""
        if not self._event.is_set():
            self.stopped_at = time.monotonic()
            self._event.set()

    def __call__(self) -> bool:
        if self._event.is_set():
            return True
        if self._until is not None and time.monotonic() >= self._until:
            self.set()
            return True
        return False


class SolvePool:
    """A thread pool with admission control, per-client limits and stop flags.

    Parameters
    ----------
    workers : solves running at once.
    queue : solves allowed to wait for a worker.
    per_client : solves one client may have admitted at once (default: all).
    max_work_s : time budget of a solve whose call has no deadline (None: unbounded).
    """

    def __init__(
        self,
        workers: int,
        queue: int,
        *,
        per_client: int | None = None,
        max_work_s: float | None = None,
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="commap-solve")
        # long solves have their own threads, one fewer than the workers: short ones are never
        # queued behind them
        self._heavy_executor = ThreadPoolExecutor(
            max_workers=max(workers - 1, 1), thread_name_prefix="commap-long-solve"
        )
        self._capacity = workers + queue
        self._per_client = per_client or self._capacity
        self._max_work_s = max_work_s
        self._in_flight = 0  # touched only on the event loop thread
        self._by_client: Counter[str] = Counter()

    @property
    def in_flight(self) -> int:
        """Solves admitted and not finished."""
        return self._in_flight

    @property
    def capacity(self) -> int:
        """Most solves admitted at once."""
        return self._capacity

    @property
    def per_client(self) -> int:
        """Most solves admitted at once for one client."""
        return self._per_client

    def _release(self, client: str, future: asyncio.Future[Any]) -> None:
        self._in_flight -= 1
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]
        if not future.cancelled() and future.exception() is not None:
            # retrieved here so an abandoned (stopped) solve's error is logged, not warned about
            log.debug("abandoned solve ended with %r", future.exception())

    def _admit(self, client: str, what: str) -> None:
        if self._in_flight >= self._capacity:
            raise ServerOverloadedError(
                f"server busy: {self._in_flight} {what}s in progress (limit {self._capacity}); retry later"
            )
        if self._by_client[client] >= self._per_client:
            raise ServerOverloadedError(
                f"server busy for this client: {self._by_client[client]} of its calls in progress "
                f"(limit {self._per_client} per client); retry later"
            )

    async def run(
        self,
        func: Callable[[], T],
        *,
        timeout_s: float | None = None,
        what: str = "solve",
        client: str = "",
        long: bool = False,
    ) -> T:
        """Run ``func()`` in a worker thread, stoppable, and await its result.

        ``func`` runs inside :func:`commap.plan.cancel.stop_when`: its flag is raised when
        ``timeout_s`` (else the pool's ``max_work_s``) has passed or this call is cancelled.
        ``long`` work (by the caller's estimate) runs on the long-solve threads, so that it
        never holds every worker.

        Raises
        ------
        ServerOverloadedError
            When ``workers + queue`` solves, or ``per_client`` of ``client``'s, are admitted.
        SolverTimeoutError
            When ``timeout_s`` passes first (the work is told to stop).
        """
        self._admit(client, what)
        budget_s = timeout_s if timeout_s is not None else self._max_work_s
        flag = StopFlag(budget_s)

        def stoppable() -> T:
            with stop_when(flag):
                return func()

        loop = asyncio.get_running_loop()
        self._in_flight += 1
        self._by_client[client] += 1
        executor = self._heavy_executor if long else self._executor
        future = loop.run_in_executor(executor, stoppable)
        future.add_done_callback(lambda f: self._release(client, f))
        try:
            # shield: a timeout or cancellation abandons the wait, not the slot accounting
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            flag.set()
            raise SolverTimeoutError(f"{what} did not finish within {timeout_s:.2f} s") from None
        except asyncio.CancelledError:  # the caller went away: stop its work too
            flag.set()
            raise
        except SolverTimeoutError as exc:  # the work saw its budget run out
            if budget_s is not None and timeout_s is None:
                raise SolverTimeoutError(
                    f"{what} stopped at the server's work budget of {budget_s:g} s"
                ) from exc
            raise

    def shutdown(self) -> None:
        """Stop accepting work; running threads finish on their own."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._heavy_executor.shutdown(wait=False, cancel_futures=True)
