"""The maps a server serves, with the fleet measurements they have received.

Each served map keeps the map as built (``base``) and the map requests use (``current``): the
base with every network that has stored fleet measurements wrapped in a fused layer (measured
values override modelled ones where dense). Storing a batch costs O(batch): the server's upload
process (:func:`server.ingest.store_stream`) appends durable part files (fsynced and read back
before the call is acknowledged) and reads nothing stored before; :meth:`MapStore.record_stored`
then counts the batch here. Apart from the upload, at most once per ``fleet_refresh_interval_s``,
a refresh swaps ``current`` for a map fused with every stored record, so calls in flight keep a
consistent map and later calls see the new data.

The fusion runs in a fusion process of its own (:class:`server.processes.WorkerProcess`) and is
incremental (:class:`commap.map.fleet.FleetFusion`): the process keeps every record's H3 cell
and values, reads only the parts of batches stored since the last refresh (in-process, or on a
dask cluster: ``--fleet-executor dask [--fleet-scheduler ADDRESS]``), computes again only the
cells they fall in and sends back one measured layer per network (:func:`fleet_layers`), equal
to a full re-fusion of every stored record; wrapping them over the map's layers here is cheap.
Planning threads never share the GIL with it.

Exactly-once uploads: a batch stored with a client's batch key carries the key's digest in its
batch id (:func:`commap.map.store.batch_key_digest`), written atomically with the batch; the
upload process's writer (:class:`server.ingest.BatchWriter`) reads the index of those digests
from the part names at its first batch, so a retry after a crash between storing and
acknowledging (of the server or of the upload process) is acknowledged, not stored twice.

Measurements live in a fleet store (:class:`commap.map.store.FleetStore`, a partitioned
Parquet dataset: ``map=<name>/network=<id>/day=<YYYY-MM-DD>/part-*.parquet``) rooted at
``<maps_dir>/<name>/measurements/`` beside the built map (a map rebuild replaces ``built/`` but
must not lose fleet data), or at ``--measurements-dir`` (a directory or an fsspec URL). A batch
is acknowledged only once its parts are durable and read back; later batches are read
incrementally (only parts newer than the last one seen). At start, parts that cannot be read are
set aside (``*.unreadable``, logged) instead of keeping the server down, and temporary files of
writers that crashed mid-write are removed.

:meth:`MapStore.reload` reads a map again from where it was configured (after a rebuild) and
swaps it in only once it has loaded completely, every file matches the manifest's checksums,
the manifest did not change during the load, and the new map answers a probe query; otherwise
the previous version keeps serving and the reason is logged and returned.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing.util
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from commap.errors import (
    InvalidInputError,
    MapNotFoundError,
    StorageUnavailableError,
    is_storage_fault,
)
from commap.files import sha256_file
from commap.map.comm_map import CommMap
from commap.map.executors import TaskRunner
from commap.map.fleet import FleetFusion
from commap.map.manifest import MANIFEST, resolve_map_dir
from commap.map.store import FleetStore
from commap.service.drive_session import with_measured_layers
from server.config import ServerConfig
from server.convert import shown
from server.ingest import StoredBatch, UploadTarget
from server.pool import lower_thread_priority
from server.processes import WorkerProcess

if TYPE_CHECKING:
    from commap.radio.layers.measured import MeasuredLayer

__all__ = [
    "FLEET_DENSE_MIN_SAMPLES",
    "FleetLayers",
    "FusionJob",
    "MapStore",
    "ReloadOutcome",
    "ReloadResult",
    "ServedMap",
    "StoreOutcome",
    "close_fleet_runners",
    "fleet_layers",
    "freeze_long_lived_objects",
]

log = logging.getLogger(__name__)


@dataclass
class ServedMap:
    """One served map and its stored fleet measurements."""

    base: CommMap
    store: FleetStore
    current: CommMap
    fused_count: int = 0  # stored records (of the map's networks) fused into ``current``
    last_batch_id: str | None = None  # newest batch fused into ``current``: where refreshes go on
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # records per batch stored since the last refresh of ``current``: by batch id, because a
    # refresh may fuse a batch before its upload is counted here (then it is not counted again)
    unfused: dict[str, int] = field(default_factory=dict, repr=False)
    refresh_pending: bool = False  # a refresh is scheduled
    refreshed_at: float = 0.0  # time.monotonic() of the last refresh
    source: str = ""  # the configured name or directory: where reloads read the map again
    manifest_sha256: str = ""
    generation: int = 1  # versions served since start

    @property
    def name(self) -> str:
        """Map name."""
        return self.base.name

    @property
    def measurement_count(self) -> int:
        """Stored records of the map's networks in use (also those not fused in yet)."""
        return self.fused_count + sum(self.unfused.values())


# Fleet data: a cell's measurements override the modelled value once it holds this many (one
# vehicle pass at 30-50 km/h leaves about 4-6 one-second samples in a 50 m cell).
FLEET_DENSE_MIN_SAMPLES = 5


@dataclass(frozen=True)
class FusionJob:
    """Which stored records to fuse (sent to the fusion process)."""

    map_name: str
    store_root: str
    known_networks: tuple[str, ...]
    since: str | None = None  # the newest batch already served: nothing newer, nothing to do
    executor: str = "serial"  # where the new parts are read and aggregated: serial | dask
    scheduler: str | None = None  # dask: a scheduler's address (None: a LocalCluster)


@dataclass(frozen=True)
class FleetLayers:
    """Measured layers of every stored record of a map, and which batches they hold.

    ``layers`` is None when nothing was stored after the job's ``since``.
    """

    layers: dict[str, MeasuredLayer] | None
    last_batch_id: str | None
    record_count: int


# the fusion process's state per (store, map, networks): every record's cell and values so far
_FUSIONS: dict[tuple[str, str, tuple[str, ...]], FleetFusion] = {}
# where the fusion process runs the per-part work, kept between refreshes (a dask cluster)
_RUNNERS: dict[tuple[str, str | None], TaskRunner] = {}


def _runner(job: FusionJob) -> TaskRunner:
    key = (job.executor, job.scheduler)
    if key not in _RUNNERS:
        if not _RUNNERS and job.executor != "serial":
            # a worker process exits without atexit handlers: multiprocessing's finalizers
            # still run, so a LocalCluster started here is closed, not left to its nannies
            multiprocessing.util.Finalize(None, close_fleet_runners, exitpriority=10)
        _RUNNERS[key] = TaskRunner(job.executor, scheduler=job.scheduler)
    return _RUNNERS[key]


def close_fleet_runners() -> None:
    """Close the dask clients (and clusters started) of this process's fleet refreshes."""
    while _RUNNERS:
        _, runner = _RUNNERS.popitem()
        try:
            runner.close()
        except Exception:  # a cluster that is gone already: nothing left to close
            log.warning("a fleet refresh's dask client did not close cleanly", exc_info=True)


def fleet_layers(job: FusionJob) -> FleetLayers:
    """Measured layers of every stored record of the job's map (the fusion process's job).

    Blocking. Incremental: reads only the parts stored since the previous job of the same map
    and networks, and computes again only the cells they fall in (:class:`FleetFusion`); the
    first job of a map reads every part. A part that cannot be read is set aside (renamed
    ``*.unreadable``, logged as an error) rather than keeping the server from starting; parts
    of networks the map no longer has are skipped and kept.
    """
    key = (job.store_root, job.map_name, job.known_networks)
    fusion = _FUSIONS.get(key)
    if fusion is None:
        for stale in [k for k in _FUSIONS if k[:2] == key[:2]]:  # one version of a map's networks
            del _FUSIONS[stale]
        fusion = FleetFusion(FleetStore(job.store_root), job.map_name, job.known_networks)
        _FUSIONS[key] = fusion
    try:
        fusion.refresh(runner=_runner(job))
    except BaseException:
        del _FUSIONS[key]  # half a refresh is no state to go on from: the next reads all again
        if job.executor != "serial":  # a lost cluster: the next refresh connects (starts) anew
            close_fleet_runners()
        raise
    if fusion.last_batch_id == job.since:
        return FleetLayers(None, fusion.last_batch_id, fusion.record_count)
    return FleetLayers(fusion.layers, fusion.last_batch_id, fusion.record_count)


class ReloadOutcome(StrEnum):
    """What a reload did to one map."""

    RELOADED = "reloaded"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


@dataclass(frozen=True)
class StoreOutcome:
    """What storing one batch did: its id, the map's record count, whether it was a retry."""

    batch_id: str
    stored_count: int
    already_stored: bool = False


@dataclass(frozen=True)
class ReloadResult:
    """The outcome of reloading one map (``error`` says why it was rejected)."""

    map_name: str
    outcome: ReloadOutcome
    manifest_sha256: str
    generation: int
    error: str = ""


def _manifest_sha256(directory: Path) -> str:
    try:
        return sha256_file(directory / MANIFEST)
    except OSError as exc:
        raise InvalidInputError(f"{directory / MANIFEST}: unreadable ({exc.strerror})") from None


def _probe(cmap: CommMap) -> None:
    """Query every layer once at the map's centre: a map that loads but cannot answer fails."""
    lon0, lat0, lon1, lat1 = cmap.bbox
    quality = cmap.quality_at([(lon0 + lon1) / 2], [(lat0 + lat1) / 2])
    if quality.sinr_db.shape != (1, len(cmap.catalogue)) or np.isnan(quality.sinr_db).any():
        raise InvalidInputError(f"map {cmap.name}: the probe query at the map centre failed")


class MapStore:
    """Loads the configured maps and stores their fleet measurements.

    Parameters
    ----------
    config : server configuration (map names, maps directory, measurements directory).
    """

    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self._maps: dict[str, ServedMap] = {}
        self._default = ""
        # fuses stored measurements into the served maps, apart from uploads and solves
        self._refresher = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="commap-fleet", initializer=lower_thread_priority
        )
        self._fusion = WorkerProcess("fleet fusion", niceness=15, preload=("server.maps",))
        self._closing = threading.Event()

    @property
    def loaded(self) -> bool:
        """True once :meth:`load_all` has loaded every map."""
        return bool(self._maps)

    @property
    def names(self) -> tuple[str, ...]:
        """Served map names, in configuration order."""
        return tuple(self._maps)

    @property
    def default_name(self) -> str:
        """The map used when a request names none."""
        return self._default

    def _store(self, cmap: CommMap) -> FleetStore:
        root = self._config.measurements_dir
        if root is not None:
            return FleetStore(root)
        directory = cmap.directory
        # maps/<name>/built -> maps/<name>/measurements: survives `make map` rebuilds
        return FleetStore(
            (directory.parent if directory.name == "built" else directory) / "measurements"
        )

    def load_all(self) -> None:
        """Load every configured map and its stored measurements (blocking: call in a thread).

        Raises
        ------
        MapNotFoundError, InvalidInputError
            A configured map is missing or corrupt (the server must not start half-configured).
        StorageUnavailableError
            A fleet store holds a damaged part or a crashed writer's file that cannot be set
            aside (read-only or full storage). A clean read-only store is served: uploads to it
            then fail as UNAVAILABLE.
        """
        maps: dict[str, ServedMap] = {}
        for name in self._config.map_names:
            directory = resolve_map_dir(name, self._config.settings)
            digest = _manifest_sha256(directory)
            base = CommMap.load(directory)
            if base.name in maps:
                raise InvalidInputError(f"map {base.name!r} is configured twice", field="maps")
            served = ServedMap(
                base=base,
                store=self._store(base),
                current=base,
                source=name,
                manifest_sha256=digest,
            )
            try:
                served.store.remove_stale_temp_parts(base.name)
                if served.store.parts(base.name):  # else no fusion process is needed yet
                    self._refresh(served)
            except OSError as exc:
                if not is_storage_fault(exc):
                    raise
                raise StorageUnavailableError(
                    f"map {base.name}: fleet store {served.store.root} cannot be tidied "
                    f"({exc.strerror}: {exc.filename or exc}): make it writable, or move "
                    "the named file away"
                ) from None
            maps[base.name] = served
            log.info(
                "serving map %s (%d networks, %d stored measurements)",
                base.name,
                len(base.catalogue),
                served.measurement_count,
            )
        default = self._config.settings.default_map
        self._default = default if default in maps else next(iter(maps))
        self._maps = maps

    def close(self) -> None:
        """Stop refreshing (at shutdown); stored batches are read again at the next start."""
        self._closing.set()
        self._refresher.shutdown(wait=False, cancel_futures=True)
        self._fusion.shutdown()

    def get(self, name: str) -> ServedMap:
        """The served map ``name`` (empty: the default map).

        Raises
        ------
        MapNotFoundError
            If the server does not serve that map.
        """
        key = name or self._default
        try:
            return self._maps[key]
        except KeyError:
            served = ", ".join(self._maps) or "none"
            raise MapNotFoundError(
                f"map {shown(key)} is not served here; served maps: {served}"
            ) from None

    def upload_target(self, served: ServedMap) -> UploadTarget:
        """What the upload process needs to store a batch of ``served``."""
        base = served.base
        return UploadTarget(served.name, served.store.url, tuple(base.catalogue.ids), base.bbox)

    def _fused(self, served: ServedMap, base: CommMap, since: str | None) -> FleetLayers:
        """Measured layers of every stored record of ``base``'s networks (fusion process)."""
        config = self._config
        job = FusionJob(
            served.name,
            served.store.url,
            tuple(base.catalogue.ids),
            since,
            executor=config.fleet_executor,
            scheduler=config.fleet_scheduler,
        )
        return self._fusion.call(fleet_layers, job)

    def _swap(self, served: ServedMap, base: CommMap, current: CommMap, fused: FleetLayers) -> bool:
        """Serve ``current`` (``base`` fused with ``fused``), unless newer data or a reload won.

        Called with ``served.lock`` held.
        """
        if served.base is not base or (served.last_batch_id or "") > (fused.last_batch_id or ""):
            return False  # a reload (or another refresh) already serves a newer view
        served.current, served.fused_count = current, fused.record_count
        served.last_batch_id = fused.last_batch_id
        newest = fused.last_batch_id or ""
        served.unfused = {b: n for b, n in served.unfused.items() if b > newest}
        served.refreshed_at = time.monotonic()
        return True

    def _refresh(self, served: ServedMap) -> None:
        """Fuse the batches stored since the last refresh (all at first) into ``current``.

        The fusion takes time in proportion to the new batches (and to the records of the
        cells they touch): it runs in the fusion process, without holding the map's lock (uploads go on meanwhile), and the result is
        swapped in only if no reload replaced the map and no other refresh got ahead.
        """
        with served.lock:
            base, since = served.base, served.last_batch_id
        fused = self._fused(served, base, since)
        if fused.layers is None:
            with served.lock:
                served.refreshed_at = time.monotonic()
            return
        current = with_measured_layers(
            base, fused.layers, dense_min_samples=FLEET_DENSE_MIN_SAMPLES
        )
        with served.lock:
            self._swap(served, base, current, fused)

    def _schedule_refresh(self, served: ServedMap) -> None:
        """Fuse newly stored batches in soon: at most one refresh per refresh interval.

        Called with ``served.lock`` held. The refresh runs on the map store's own thread, never
        on the path that acknowledges an upload.
        """
        if served.refresh_pending:
            return
        served.refresh_pending = True
        interval_s = self._config.fleet_refresh_interval_s
        delay_s = max(served.refreshed_at + interval_s - time.monotonic(), 0.0)
        self._refresher.submit(self._refresh_later, served, delay_s)

    def _refresh_later(self, served: ServedMap, delay_s: float) -> None:
        if self._closing.wait(delay_s):
            return  # shutting down: the next start reads every stored batch anyway
        with served.lock:
            served.refresh_pending = False
        try:
            self._refresh(served)
        except Exception:  # stored data is safe; the fused view catches up on the next batch
            log.exception("map %s: measurements stored but not yet fused", served.name)

    def record_stored(self, served: ServedMap, stored: StoredBatch) -> StoreOutcome:
        """Count a batch the upload process stored; requests use it after the next refresh.

        The map requests use is refreshed with it within ``fleet_refresh_interval_s``, apart
        from the upload. A batch whose key was stored before is not counted again.
        """
        with served.lock:
            fused_already = stored.batch_id <= (served.last_batch_id or "")
            if not stored.already_stored and not fused_already:
                served.unfused[stored.batch_id] = stored.record_count
                self._schedule_refresh(served)
            return StoreOutcome(stored.batch_id, served.measurement_count, stored.already_stored)

    # -- hot reload --------------------------------------------------------------------------
    def _load_checked(self, served: ServedMap) -> tuple[CommMap, str]:
        """The map at the served map's source, loaded and checked (raises when unusable)."""
        directory = resolve_map_dir(served.source, self._config.settings)
        before = _manifest_sha256(directory)
        cmap = CommMap.load(directory)  # manifest format, every file present and checksummed
        if cmap.name != served.name:
            raise InvalidInputError(
                f"{directory}: the manifest names map {cmap.name!r}, not {served.name!r}"
            )
        _probe(cmap)
        if _manifest_sha256(directory) != before:
            raise InvalidInputError(f"{directory}: the map changed while it was being loaded")
        return cmap, before

    def reload(self, name: str) -> ReloadResult:
        """Load map ``name`` again from disk and serve it if it passes every check.

        Blocking (call in a thread). Calls in flight keep the map they started with; the old
        version keeps serving when the new one is rejected.

        Raises
        ------
        MapNotFoundError
            ``name`` is not a served map (it is never used as a path).
        """
        served = self.get(name)
        try:
            cmap, digest = self._load_checked(served)
            if digest == served.manifest_sha256:
                outcome = ReloadOutcome.UNCHANGED
            else:
                fused = self._fused(served, cmap, None)
                current = with_measured_layers(
                    cmap, fused.layers or {}, dense_min_samples=FLEET_DENSE_MIN_SAMPLES
                )
                with served.lock:  # refreshes of the old map are not swapped in after this
                    served.base, served.last_batch_id = cmap, None
                    self._swap(served, cmap, current, fused)
                    served.manifest_sha256 = digest
                    served.generation += 1
                outcome = ReloadOutcome.RELOADED
        except Exception as exc:  # whatever breaks the new version, the old one keeps serving
            log.warning(
                "map %s: reload rejected, version %d keeps serving: %s",
                served.name,
                served.generation,
                exc,
            )
            return ReloadResult(
                served.name,
                ReloadOutcome.REJECTED,
                served.manifest_sha256,
                served.generation,
                error=str(exc) or type(exc).__name__,
            )
        log.info("map %s: reload %s (version %d)", served.name, outcome, served.generation)
        return ReloadResult(served.name, outcome, served.manifest_sha256, served.generation)


def freeze_long_lived_objects() -> None:
    """Move the objects alive now (loaded maps, modules) out of the cyclic collector's reach.

    The loaded maps and modules are some 10^5 objects that live as long as the server: every
    full collection would scan them again, pausing the event loop (and every Drive stream)
    for about a tenth of a second. Called once the maps are loaded and after every reload:
    the collection first frees what a replaced map left in reference cycles, which a frozen
    generation would otherwise keep for good.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
