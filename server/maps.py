"""The maps a server serves, with the fleet measurements they have received.

Each served map keeps the map as built (``base``) and the map requests use (``current``): the
base with every network that has stored fleet measurements wrapped in a fused layer (measured
values override modelled ones where dense). Storing a batch costs O(batch): it appends durable
part files (fsynced and read back before the call is acknowledged) and nothing stored before is
read. Apart from the upload, at most once per ``fleet_refresh_interval_s``, a refresh reads the
new batches and swaps ``current`` for a map fused from all stored records, so calls in flight
keep a consistent map and later calls see the new data.

Exactly-once uploads: a batch stored with a client's batch key carries the key's digest in its
batch id (:func:`commap.map.store.batch_key_digest`), written atomically with the batch; the
index of those digests is rebuilt from the part names at start, so a retry after a crash
between storing and acknowledging is acknowledged, not stored twice.

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

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from commap.errors import (
    InvalidInputError,
    MapNotFoundError,
    StorageUnavailableError,
    is_storage_fault,
)
from commap.files import sha256_file
from commap.map.comm_map import CommMap
from commap.map.manifest import MANIFEST, resolve_map_dir
from commap.map.store import FleetStore, batch_digest, batch_key_digest
from server.config import ServerConfig
from server.convert import shown
from server.pool import lower_thread_priority

__all__ = [
    "FLEET_DENSE_MIN_SAMPLES",
    "MapStore",
    "ReloadOutcome",
    "ReloadResult",
    "ServedMap",
    "StoreOutcome",
    "fuse_measurements",
]

log = logging.getLogger(__name__)


@dataclass
class ServedMap:
    """One served map and its stored fleet measurements."""

    base: CommMap
    store: FleetStore
    current: CommMap
    records: pd.DataFrame = field(default_factory=lambda: _no_records(), repr=False)
    last_batch_id: str | None = None  # newest batch in ``records``: where refreshes go on
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # client batch keys: digest -> batch id of every visible batch (exactly-once uploads)
    batch_ids: dict[str, str] = field(default_factory=dict, repr=False)
    unfused_count: int = 0  # records stored since the last refresh of ``current``
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
        return len(self.records) + self.unfused_count


def _no_records() -> pd.DataFrame:
    from commap.radio.measurements import empty_records

    return empty_records()


# Fleet data: a cell's measurements override the modelled value once it holds this many (one
# vehicle pass at 30-50 km/h leaves about 4-6 one-second samples in a 50 m cell).
FLEET_DENSE_MIN_SAMPLES = 5


def fuse_measurements(base: CommMap, records: pd.DataFrame) -> CommMap:
    """``base`` with each measured network's layer fused with its rows of ``records``.

    Networks without records keep their layer object, so nothing is recomputed for them.

    Examples
    --------
    >>> from commap.radio.measurements import empty_records
    >>> fuse_measurements(None, empty_records()) is None  # no records: the map as it is
    True
    """
    if len(records) == 0:
        return base
    from commap.service.drive_session import with_measurements

    return with_measurements(base, records, dense_min_samples=FLEET_DENSE_MIN_SAMPLES)


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
                served.batch_ids = {
                    batch_digest(p.batch_id): p.batch_id for p in served.store.parts(base.name)
                }
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

    def _refresh(self, served: ServedMap) -> None:
        """Read the batches stored since the last refresh (all at first) and fuse them in.

        The fusion takes time in proportion to every stored record: it runs without holding
        the map's lock (uploads go on meanwhile), and the result is swapped in only if no reload
        replaced the map and no other refresh got ahead in the meantime.
        """
        with served.lock:
            base, since, old = served.base, served.last_batch_id, served.records
        new, last = self._stored_records_for(base, served.store, since=since)
        if len(new) == 0 and since is not None:
            with served.lock:
                served.refreshed_at = time.monotonic()
            return
        records = new if since is None else _concat(old, new)
        current = fuse_measurements(base, records)
        with served.lock:
            if served.base is not base or served.last_batch_id != since:
                return  # a reload (or another refresh) already serves a newer view
            served.current, served.records, served.last_batch_id = current, records, last
            served.unfused_count = max(served.unfused_count - len(new), 0)
            served.refreshed_at = time.monotonic()

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

    def store_measurements(
        self, name: str, records: pd.DataFrame, *, batch_key: str = ""
    ) -> StoreOutcome:
        """Store one batch durably; later requests use it (blocking: call in a thread).

        Costs O(batch): the batch's parts are written and read back, nothing else is read.
        The map requests use is refreshed with it within ``fleet_refresh_interval_s``, apart
        from this call. With a ``batch_key`` already stored, nothing is stored again.

        Raises
        ------
        InvalidInputError
            The batch does not validate (nothing is stored).
        """
        served = self.get(name)
        digest = batch_key_digest(served.name, batch_key) if batch_key else None
        with served.lock:  # one writer per map: parts, key index and counts stay in step
            if digest is not None and digest in served.batch_ids:
                stored_id = served.batch_ids[digest]
                log.info("map %s: batch %s already stored: acknowledged again", name, stored_id)
                return StoreOutcome(stored_id, served.measurement_count, already_stored=True)
            batch = served.store.append(
                served.name,
                records,
                known_networks=served.base.catalogue.ids,
                batch_key=batch_key or None,
            )
            try:  # acknowledged means readable: a batch that does not read back is not kept
                back = served.store.read_stored(batch)
                if len(back) != batch.record_count:
                    raise InvalidInputError(f"{len(back)} of {batch.record_count} records read")
            except InvalidInputError as exc:
                for path in batch.parts:
                    served.store.fs.rm(path)
                log.error(
                    "map %s: batch %s did not read back, removed: %s", name, batch.batch_id, exc
                )
                raise InvalidInputError(
                    "measurements: the batch does not survive storage unchanged; nothing stored",
                    field="measurements",
                ) from None
            log.info(
                "map %s: stored %d measurements as batch %s",
                served.name,
                batch.record_count,
                batch.batch_id,
            )
            served.batch_ids[batch_digest(batch.batch_id)] = batch.batch_id
            served.unfused_count += batch.record_count
            self._schedule_refresh(served)
            return StoreOutcome(batch.batch_id, served.measurement_count)

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
            with served.lock:  # no measurement batch is fused into the old map meanwhile
                if digest == served.manifest_sha256:
                    outcome = ReloadOutcome.UNCHANGED
                else:
                    records, last = self._stored_records_for(cmap, served.store)
                    current = fuse_measurements(cmap, records)
                    served.base, served.current = cmap, current
                    served.records, served.last_batch_id = records, last
                    served.unfused_count = 0
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

    def _stored_records_for(
        self, cmap: CommMap, store: FleetStore, *, since: str | None = None
    ) -> tuple[pd.DataFrame, str | None]:
        """Stored records of the map's networks (batches after ``since``), and the last batch id.

        A part that cannot be read is set aside (renamed ``*.unreadable``, logged as an error)
        rather than keeping the server from starting; records of networks the map no longer has
        are skipped, their parts kept.
        """
        last = store.last_batch_id(cmap.name) or since
        records = store.read(cmap.name, since=since, until=last, set_aside_unreadable=True)
        known = records["network_id"].isin(cmap.catalogue.ids)
        if not known.all():
            log.warning(
                "map %s: %d stored measurements name networks the map does not have: skipped",
                cmap.name,
                int((~known).sum()),
            )
            records = records[known].reset_index(drop=True)
        return records, last


def _concat(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([old, new], ignore_index=True)
