"""Where the tiles of a map build run: serial, a process pool or dask; and the parts log.

:func:`run_tiles` runs one task per tile with an executor (``serial``; ``processes``: a
``concurrent.futures`` process pool; ``dask``: ``dask.distributed``, a ``LocalCluster`` or an
existing scheduler; dask is imported only here, and only when chosen) and reports each finished
tile. Every executor gives the same output: the task is a pure function of its arguments.
:class:`PartLog` records finished parts so a killed build resumes where it stopped.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from commap.errors import InvalidInputError

__all__ = [
    "EXECUTORS",
    "PartLog",
    "TaskRunner",
    "check_executor",
    "local_cluster",
    "pool_start_method",
    "run_tiles",
]

log = logging.getLogger(__name__)

EXECUTORS = ("serial", "processes", "dask")

P = TypeVar("P")
R = TypeVar("R")
T = TypeVar("T")
# A tile task: (map directory, tile id, parameters) -> its result (the part it wrote, ...). It
# must be a module-level function: process pools and dask send it to workers by reference.
TileTask = Callable[[str, str, P], R]
Done = Callable[[str, R], None]


def check_executor(executor: str, workers: int | None, scheduler: str | None) -> int:
    """Validate executor options; return the number of workers to start.

    Raises
    ------
    InvalidInputError
        Unknown executor, fewer than one worker, or a scheduler address without ``dask``.

    Examples
    --------
    >>> check_executor("serial", None, None)
    1
    >>> check_executor("processes", 2, None)
    2
    >>> check_executor("threads", None, None)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: unknown executor 'threads'; expected serial, processes, dask
    """
    if executor not in EXECUTORS:
        raise InvalidInputError(
            f"unknown executor {executor!r}; expected {', '.join(EXECUTORS)}", field="executor"
        )
    if workers is not None and (
        isinstance(workers, bool) or int(workers) != workers or workers < 1
    ):
        raise InvalidInputError(f"workers must be an integer >= 1, got {workers}", field="workers")
    if scheduler and executor != "dask":
        raise InvalidInputError("a scheduler address needs the dask executor", field="scheduler")
    if executor == "serial":
        return 1
    return int(workers) if workers is not None else (os.cpu_count() or 1)


def pool_start_method() -> str:
    """How the ``processes`` executor starts its workers in this process: fork or spawn.

    ``fork`` (workers inherit what the caller loaded) only where it is safe: on Linux and other
    POSIX systems but macOS (whose system libraries do not survive a fork), from a process
    running one Python thread (a fork copies no other thread, and a lock one of them held would
    stay locked in the worker). Else ``spawn``: workers start clean.

    Examples
    --------
    >>> pool_start_method() in ("fork", "spawn")
    True
    """
    forkable = "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin"
    return "fork" if forkable and threading.active_count() == 1 else "spawn"


def run_tiles(
    task: TileTask[P, R],
    map_dir: Path,
    todo: Sequence[str],
    params: P,
    *,
    executor: str,
    workers: int,
    scheduler: str | None,
    done: Done[R],
    warm: Callable[[], object] | None = None,
) -> None:
    """Run ``task(map_dir, tile, params)`` for every tile of ``todo``; ``done(tile, result)`` each.

    ``done`` runs in the calling process, as tiles finish (in any order). Validate the options
    with :func:`check_executor` first (``workers`` is its result). ``warm`` loads in the calling
    process what every task needs (the map): called only before forking pool workers, which
    then inherit it (:func:`pool_start_method`).

    Examples
    --------
    >>> seen = []
    >>> run_tiles(lambda d, t, p: Path(d) / t, Path("m"), ["a", "b"], None, executor="serial",
    ...           workers=1, scheduler=None, done=lambda t, p: seen.append(p.as_posix()))
    >>> seen
    ['m/a', 'm/b']
    """
    if not todo:
        return
    if executor == "serial":
        for tile in todo:
            done(tile, task(str(map_dir), tile, params))
    elif executor == "processes":
        _run_processes(task, map_dir, todo, params, workers, done, warm)
    else:
        _run_dask(task, map_dir, todo, params, workers, scheduler, done)


def _run_processes(
    task: TileTask[P, R],
    map_dir: Path,
    todo: Sequence[str],
    params: P,
    workers: int,
    done: Done[R],
    warm: Callable[[], object] | None,
) -> None:
    method = pool_start_method()
    if method == "fork" and warm is not None:
        warm()  # before the fork: every worker inherits it
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
        futures: dict[Future[R], str] = {
            pool.submit(task, str(map_dir), tile, params): tile for tile in todo
        }
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: futures[f]):
                    done(futures[future], future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


_SCHEDULER_TIMEOUT_S = 20.0  # connecting to an existing scheduler


def local_cluster(workers: int) -> Any:
    """A ``dask.distributed.LocalCluster`` of ``workers`` one-thread processes, as commap starts it.

    Without a dashboard nobody reads the workers' statistical profiler; it samples the task
    thread every 10 ms and cost a tenth of a worker's CPU on tiles, so it is off. The
    scheduler's HTTP server (health routes) starts even without a dashboard, on port 8787
    unless told otherwise: any free local port, so that two clusters on one machine neither
    collide nor warn. A cluster given by address keeps its own settings.
    """
    import dask
    from dask.distributed import LocalCluster

    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )


def _dask_client(workers: int, scheduler: str | None) -> Any:
    from dask.distributed import Client

    if scheduler:
        try:
            return Client(scheduler, timeout=_SCHEDULER_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise InvalidInputError(
                f"cannot reach the dask scheduler at {scheduler}: {exc}", field="scheduler"
            ) from None
    return Client(local_cluster(workers))


def _run_dask(
    task: TileTask[P, R],
    map_dir: Path,
    todo: Sequence[str],
    params: P,
    workers: int,
    scheduler: str | None,
    done: Done[R],
) -> None:
    from dask.distributed import as_completed

    client = _dask_client(workers, scheduler)
    cluster = None if scheduler else client.cluster
    try:
        # pure=False: random task keys, so two builds on one shared cluster never share results
        futures = [client.submit(task, str(map_dir), t, params, pure=False) for t in todo]
        tiles = {f.key: t for f, t in zip(futures, todo, strict=True)}
        try:
            for future in as_completed(futures):
                done(tiles[future.key], future.result())
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class TaskRunner:
    """Runs one task over many items, in-process or on dask, keeping the cluster between runs.

    For work that comes again every few seconds (a fleet refresh: one task per new part file),
    where starting a ``LocalCluster`` (seconds) or connecting to a scheduler per run would cost
    more than the work. ``serial`` runs in the calling process; ``dask`` on a ``LocalCluster`` of
    ``workers`` processes, or on the cluster at ``scheduler``, connected at the first run.
    Results come back in the items' order; the task must be a module-level function.

    Examples
    --------
    >>> with TaskRunner() as runner:
    ...     runner.map(pow, [2, 3], 2)
    [4, 9]
    """

    def __init__(
        self, executor: str = "serial", *, workers: int | None = None, scheduler: str | None = None
    ) -> None:
        if executor == "processes":
            raise InvalidInputError(
                "a task runner runs serial or on dask, not on a process pool", field="executor"
            )
        self.workers = check_executor(executor, workers, scheduler)
        self.executor = executor
        self.scheduler = scheduler
        self._client: Any = None

    def map(self, task: Callable[[T, P], R], items: Sequence[T], params: P) -> list[R]:
        """``[task(item, params) for item in items]``, on the runner's executor."""
        if self.executor == "serial" or not items:
            return [task(item, params) for item in items]
        if self._client is None:
            self._client = _dask_client(self.workers, self.scheduler)
        # pure=False: random keys, so two runs on one shared cluster never share results
        futures = self._client.map(task, list(items), params=params, pure=False)
        try:
            return list(self._client.gather(futures))
        except BaseException:
            self._client.cancel(futures)
            raise

    def close(self) -> None:
        """Close the dask client (and the ``LocalCluster`` it started)."""
        client, self._client = self._client, None
        if client is None:
            return
        cluster = None if self.scheduler else client.cluster
        client.close()
        if cluster is not None:
            cluster.close()

    def __enter__(self) -> TaskRunner:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class PartLog:
    """Append-only record of finished parts (``tile sha256`` per line, fsynced).

    Appending keeps the cost per tile constant for any number of tiles (an atomic rewrite of
    the whole log per tile would not); a line torn by a kill is ignored (its tile is built
    again).

    Examples
    --------
    >>> import tempfile
    >>> log_file = Path(tempfile.mkdtemp()) / "parts.log"
    >>> PartLog(log_file).add("t1", "0" * 64)
    >>> PartLog(log_file).done
    {'t1': '0000000000000000000000000000000000000000000000000000000000000000'}
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, str] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                fields = line.split()
                if len(fields) == 2 and len(fields[1]) == 64:
                    self.done[fields[0]] = fields[1]

    def add(self, tile: str, sha256: str) -> None:
        """Record ``tile`` as finished with a part of checksum ``sha256`` (durably)."""
        self.done[tile] = sha256
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(f"{tile} {sha256}\n")
            f.flush()
            os.fsync(f.fileno())
