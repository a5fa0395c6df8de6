"""The fleet store: measurement records as a partitioned Parquet dataset.

Layout under the store's root (a local directory or any fsspec URL, e.g. ``memory://fleet``)::

    map=<name>/network=<id>/day=<YYYY-MM-DD>/part-<batch id>-<i>of<n>.parquet

One :meth:`FleetStore.append` is one *batch*: its records are split by network and (UTC) day
and each piece is written as one new part named after the batch. Existing parts are never read
or rewritten (an append costs O(batch)). A batch id is ``<UTC arrival time>-<random hex>``, so
ids sort by arrival: :meth:`FleetStore.read` with ``since=<batch id>`` returns only the batches
stored after it (an incremental refresh).

Durability and atomicity:

* local root: each part is written to a hidden temporary file, fsynced, renamed into place and
  its directory fsynced (:func:`commap.files.atomic_path`); new partition directories are
  fsynced into their parents. :meth:`~FleetStore.append` returns only after every part is
  durable: an acknowledged batch survives a crash.
* fsspec root: parts are written under a hidden temporary name, then renamed (write-once unique
  names); durability is the filesystem's.
* a batch becomes visible all at once: a reader only takes a batch when all ``n`` of its parts
  are present, so a writer killed half-way leaves nothing visible; its hidden temporary files
  are removed by :meth:`~FleetStore.remove_stale_temp_parts`.

Map names are identifiers (``[a-z0-9_-]+``), network ids and days are checked before they
become path components, and every local path is resolved and checked to lie inside the root.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from commap.errors import InvalidInputError
from commap.files import atomic_path, fsync_dir
from commap.map.manifest import MAP_NAME
from commap.radio.measurements import RECORD_COLUMNS, empty_records, validate_records

__all__ = [
    "PART_SCHEMA",
    "FleetStore",
    "Part",
    "StoredBatch",
    "batch_digest",
    "batch_key_digest",
    "check_map_name",
]

log = logging.getLogger(__name__)

_ARROW_TYPES: dict[str, pa.DataType] = {
    "datetime64[ns, UTC]": pa.timestamp("ns", tz="UTC"),
    "float64": pa.float64(),
    "str": pa.string(),
    "string": pa.string(),
    "boolean": pa.bool_(),
    "Int64": pa.int64(),
}
PART_SCHEMA: pa.Schema = pa.schema([(c.name, _ARROW_TYPES[c.dtype]) for c in RECORD_COLUMNS])
_NETWORK_ID = re.compile(r"^[A-Za-z0-9_.+-]+$")
_PART = re.compile(
    r"^part-(?P<batch>\d{8}T\d{12}Z-[0-9a-f]{12})-(?P<index>\d+)of(?P<count>\d+)\.parquet$"
)
# temporary files of writes that never finished: ".<part>.tmp-<pid>-<hex>"
_TEMP_PART = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]+$")


def check_map_name(name: str) -> str:
    """``name`` if it is a map identifier (``[a-z0-9_-]+``), else :class:`InvalidInputError`.

    Examples
    --------
    >>> check_map_name("andorra")
    'andorra'
    >>> check_map_name("../etc")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: map name '../etc' must match [a-z0-9_-]+
    >>> check_map_name("")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: map name '' must match [a-z0-9_-]+
    """
    if not isinstance(name, str) or not MAP_NAME.match(name):
        raise InvalidInputError(f"map name {name!r} must match [a-z0-9_-]+", field="map_name")
    return name


def _check_network_id(network_id: str) -> str:
    if not _NETWORK_ID.match(network_id) or set(network_id) == {"."}:
        raise InvalidInputError(
            f"network id {network_id!r} cannot name a store partition ([A-Za-z0-9_.+-]+)",
            field="network_id",
        )
    return network_id


@dataclass(frozen=True)
class Part:
    """One stored part file: its path (inside the store) and what its name and directory say."""

    path: str
    network_id: str
    day: str
    batch_id: str
    index: int
    count: int


@dataclass(frozen=True)
class StoredBatch:
    """What :meth:`FleetStore.append` stored: the batch id, its parts and its record count."""

    batch_id: str
    parts: tuple[str, ...]
    record_count: int


def batch_key_digest(map_name: str, batch_key: str) -> str:
    """The 12 hex digits a client's batch key gives its batch id (see :meth:`FleetStore.append`).

    Examples
    --------
    >>> batch_key_digest("andorra", "car-7/000042")
    'b09479096079'
    >>> batch_key_digest("andorra", "car-7/000042") == batch_key_digest("cork", "car-7/000042")
    False
    """
    return hashlib.sha256(f"{map_name}\0{batch_key}".encode()).hexdigest()[:12]


def batch_digest(batch_id: str) -> str:
    """The 12 hex digits that end a batch id (random, or from a client's batch key).

    Examples
    --------
    >>> batch_digest("20250123T120000000000Z-4b0b1f1d5d8b")
    '4b0b1f1d5d8b'
    """
    return batch_id.rsplit("-", 1)[-1]


def _new_batch_id(digest: str | None = None) -> str:
    suffix = digest or uuid.uuid4().hex[:12]
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{suffix}"


class FleetStore:
    """Fleet measurements of every map, as a partitioned Parquet dataset (module docstring).

    Parameters
    ----------
    root : local directory or fsspec URL (``memory://...``, ``file://...``, any installed
        protocol); created on the first append.
    storage_options : passed to fsspec for the URL's filesystem.

    Examples
    --------
    >>> store = FleetStore("memory://doc-fleet")
    >>> records = pd.DataFrame({"timestamp": ["2024-04-19T16:23:00Z"], "lat": [52.27],
    ...                         "lon": [7.96], "network_id": ["starlink"],
    ...                         "throughput_dl_mbps": [17.6]})
    >>> batch = store.append("autobahn", records)
    >>> store.read("autobahn")["throughput_dl_mbps"].tolist()
    [17.6]
    >>> len(store.read("autobahn", since=batch.batch_id))  # nothing newer
    0
    >>> len(store.read("empty"))
    0
    """

    def __init__(self, root: str | os.PathLike[str], *, storage_options: Any = None) -> None:
        text = os.fspath(root)
        self.is_local = "://" not in text or text.startswith("file://")
        if self.is_local:
            local = Path(text.removeprefix("file://")).resolve()
            self._root_path: Path | None = local
            self.root = str(local)
            self.fs: fsspec.AbstractFileSystem = fsspec.filesystem("file")
        else:
            self._root_path = None
            self.fs, path = fsspec.core.url_to_fs(text, **(storage_options or {}))
            self.root = path.rstrip("/")
        # opens the same store again (e.g. in another process; storage options not included)
        self.url = self.root if self.is_local else text

    def __repr__(self) -> str:
        return f"FleetStore({self.root!r})"

    # -- paths ---------------------------------------------------------------------------------
    def _join(self, *parts: str) -> str:
        path = "/".join([self.root, *parts])
        if self._root_path is not None:
            resolved = Path(path).resolve()
            if not resolved.is_relative_to(self._root_path):
                raise InvalidInputError(f"{path}: outside the fleet store {self.root}")
            return str(resolved)
        return path

    def map_dir(self, map_name: str) -> str:
        """Where a map's partitions live (checked: an identifier, inside the root)."""
        return self._join(f"map={check_map_name(map_name)}")

    # -- writing -------------------------------------------------------------------------------
    def append(
        self,
        map_name: str,
        records: pd.DataFrame,
        *,
        known_networks: Collection[str] | None = None,
        batch_key: str | None = None,
    ) -> StoredBatch:
        """Store one batch durably as new parts (one per network and day); never reads stored data.

        ``batch_key`` (a client's idempotency key) makes the batch id end in
        :func:`batch_key_digest` instead of random digits, so the key is stored atomically with
        the batch: after a crash, :meth:`batch_for_key` finds whether the batch was stored.

        Returns
        -------
        StoredBatch
            The batch id (sorts by arrival), the part paths, the record count.

        Raises
        ------
        InvalidInputError
            Bad map name, records that do not validate, an empty batch, a network id that
            cannot be a path component (nothing is stored).
        """
        map_dir = self.map_dir(map_name)
        valid = validate_records(records, source="batch", known_networks=known_networks)
        table = _to_table(valid)
        networks = valid["network_id"].to_numpy(dtype=object)
        days = valid["timestamp"].dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
        keys = sorted(set(zip(networks.tolist(), days.tolist(), strict=True)))
        for network_id, _ in keys:
            _check_network_id(network_id)
        batch_id = _new_batch_id(
            None if batch_key is None else batch_key_digest(map_name, batch_key)
        )
        paths = []
        for i, (network_id, day) in enumerate(keys, start=1):
            rows = np.flatnonzero((networks == network_id) & (days == day))
            directory = self._join(
                f"map={check_map_name(map_name)}", f"network={network_id}", f"day={day}"
            )
            name = f"part-{batch_id}-{i}of{len(keys)}.parquet"
            self._write_part(directory, name, table.take(rows))
            paths.append(f"{directory}/{name}")
        log.debug("%s: batch %s stored %d records in %d parts", map_dir, batch_id, len(valid), i)
        return StoredBatch(batch_id, tuple(paths), len(valid))

    def _write_part(self, directory: str, name: str, table: pa.Table) -> None:
        if self._root_path is not None:
            _make_dirs_durably(Path(directory), self._root_path)
            with atomic_path(Path(directory) / name) as local_tmp:  # fsyncs file and directory
                pq.write_table(table, local_tmp)
            return
        self.fs.makedirs(directory, exist_ok=True)
        tmp = f"{directory}/.{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with self.fs.open(tmp, "wb") as f:
            pq.write_table(table, f)
        self.fs.mv(tmp, f"{directory}/{name}")

    # -- reading -------------------------------------------------------------------------------
    def parts(self, map_name: str) -> list[Part]:
        """Every visible part of the map (complete batches only), in batch order.

        Examples
        --------
        >>> FleetStore("memory://doc-parts").parts("nothing")
        []
        """
        map_dir = self.map_dir(map_name)
        if not self.fs.exists(map_dir):
            return []
        found: list[Part] = []
        for path in self.fs.find(map_dir):
            part = _parse_part(str(path))
            if part is not None:
                found.append(part)
        per_batch: dict[str, set[int]] = {}
        for part in found:
            per_batch.setdefault(part.batch_id, set()).add(part.index)
        complete = [p for p in found if len(per_batch[p.batch_id]) == p.count]
        return sorted(complete, key=lambda p: (p.batch_id, p.index))

    def last_batch_id(self, map_name: str) -> str | None:
        """The newest visible batch of the map (None: nothing stored), for ``read(since=...)``."""
        parts = self.parts(map_name)
        return parts[-1].batch_id if parts else None

    def read(
        self,
        map_name: str,
        *,
        since: str | None = None,
        until: str | None = None,
        networks: Collection[str] | None = None,
        set_aside_unreadable: bool = False,
    ) -> pd.DataFrame:
        """Stored records of a map, in batch order.

        Parameters
        ----------
        map_name : the map.
        since : a batch id: only batches stored after it (incremental refresh); None: all.
        until : a batch id: only batches up to it (e.g. :meth:`last_batch_id` taken before, so
            that a batch stored meanwhile is left for the next refresh); None: all.
        networks : only these networks' partitions; None: all.
        set_aside_unreadable : rename a part that cannot be read to ``*.unreadable`` (logged)
            and go on; False: raise.

        Returns
        -------
        pandas.DataFrame
            Every :data:`~commap.radio.measurements.RECORD_COLUMNS` column (NaN/NA where a
            batch did not carry it); an empty table when nothing matches.

        Raises
        ------
        InvalidInputError
            Bad map name; an unreadable part (unless set aside).
        """
        wanted = None if networks is None else set(networks)
        frames = []
        for part in self.parts(map_name):
            if since is not None and part.batch_id <= since:
                continue
            if until is not None and part.batch_id > until:
                continue
            if wanted is not None and part.network_id not in wanted:
                continue
            table = self._read_part(part, set_aside_unreadable=set_aside_unreadable)
            if table is not None:
                frames.append(table)
        if not frames:
            return empty_records()
        return _to_frame(pa.concat_tables(frames))

    def batch_for_key(self, map_name: str, batch_key: str) -> str | None:
        """The visible batch stored with ``batch_key`` (None: none); lists the map's parts."""
        digest = batch_key_digest(map_name, batch_key)
        found = [p.batch_id for p in self.parts(map_name) if batch_digest(p.batch_id) == digest]
        return found[0] if found else None

    def read_stored(self, batch: StoredBatch) -> pd.DataFrame:
        """The records of a batch just stored, read back from its own parts only (O(batch))."""
        tables = []
        for path in batch.parts:
            part = _parse_part(path)
            if part is None:
                raise InvalidInputError(f"{path}: not a part of this store")
            table = self._read_part(part, set_aside_unreadable=False)
            if table is not None:
                tables.append(table)
        if not tables:
            return empty_records()
        return _to_frame(pa.concat_tables(tables))

    def read_batch(self, map_name: str, batch_id: str) -> pd.DataFrame:
        """The records of one stored batch (for a read-back check)."""
        parts = [p for p in self.parts(map_name) if p.batch_id == batch_id]
        if not parts:
            return empty_records()
        tables = [self._read_part(p, set_aside_unreadable=False) for p in parts]
        return _to_frame(pa.concat_tables([t for t in tables if t is not None]))

    def read_parts(
        self,
        parts: Collection[Part],
        *,
        columns: Collection[str] | None = None,
        set_aside_unreadable: bool = False,
    ) -> pd.DataFrame:
        """The records of some parts, in the order given (e.g. the new parts, on a dask worker).

        ``columns``: only these record columns (those a caller uses: text columns cost the
        most to convert); None: all. Parts that cannot be read and are set aside give no rows.

        Raises
        ------
        InvalidInputError
            An unreadable part (unless set aside).
        """
        tables = []
        for part in parts:
            table = self._read_part(part, set_aside_unreadable=set_aside_unreadable)
            if table is not None:
                tables.append(table if columns is None else table.select(list(columns)))
        if not tables:
            records = empty_records()
            return records if columns is None else records[list(columns)]
        return _to_frame(pa.concat_tables(tables))

    def _read_part(self, part: Part, *, set_aside_unreadable: bool) -> pa.Table | None:
        try:
            with self.fs.open(part.path, "rb") as f:
                table = pq.read_table(f)
            return table.cast(PART_SCHEMA) if table.schema != PART_SCHEMA else table
        except (OSError, pa.ArrowException, ValueError) as exc:
            if not set_aside_unreadable:
                raise InvalidInputError(f"{part.path}: unreadable part ({exc})") from None
            aside = part.path + ".unreadable"
            self.fs.mv(part.path, aside)
            log.error("%s: unreadable part set aside as %s: %s", self.root, aside, exc)
            return None

    def remove_batch(self, map_name: str, batch_id: str) -> None:
        """Delete one batch's parts (e.g. a batch that failed its read-back check)."""
        for part in self.parts(map_name):
            if part.batch_id == batch_id:
                self.fs.rm(part.path)

    # -- housekeeping --------------------------------------------------------------------------
    def remove_stale_temp_parts(self, map_name: str) -> int:
        """Delete temporary part files of writers that died before their rename.

        Such a part was never acknowledged (the rename comes before the acknowledgement), so
        nothing is lost; files of writers that are still running (same host) are kept.

        Returns
        -------
        int
            Files removed.
        """
        map_dir = self.map_dir(map_name)
        if not self.fs.exists(map_dir):
            return 0
        removed = 0
        for path in self.fs.find(map_dir):
            match = _TEMP_PART.match(str(path).rsplit("/", 1)[-1])
            if match is None or _pid_alive(int(match.group(1))):
                continue
            self.fs.rm(path)
            removed += 1
        if removed:
            log.info("%s: removed %d unfinished part file(s) of crashed writers", map_dir, removed)
        return removed


def _parse_part(path: str) -> Part | None:
    segments = path.rstrip("/").split("/")
    if len(segments) < 3:
        return None
    match = _PART.match(segments[-1])
    network, day = segments[-3], segments[-2]
    if match is None or not network.startswith("network=") or not day.startswith("day="):
        return None
    return Part(
        path=path,
        network_id=network.removeprefix("network="),
        day=day.removeprefix("day="),
        batch_id=match.group("batch"),
        index=int(match.group("index")),
        count=int(match.group("count")),
    )


def _make_dirs_durably(directory: Path, root: Path) -> None:
    """Create ``directory`` (under ``root``) and fsync every new entry into its parent."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current == root or current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        fsync_dir(path.parent)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` may still write (a zombie cannot: it died, unreaped)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        pass
    # a killed writer stays a zombie until its new parent reaps it, which an init process in
    # a container may do late: its unfinished files are still garbage
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile; or no /proc (not Linux): then take it as alive
        return not Path("/proc").is_dir()
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _to_table(records: pd.DataFrame) -> pa.Table:
    """Validated records as an Arrow table with every schema column (nulls where absent)."""
    n = len(records)
    arrays = []
    for field in PART_SCHEMA:
        if field.name in records:
            values = records[field.name]
            if field.type == pa.string():
                values = values.astype("string")
            arrays.append(pa.array(values, type=field.type, from_pandas=True))
        else:
            arrays.append(pa.nulls(n, type=field.type))
    return pa.Table.from_arrays(arrays, schema=PART_SCHEMA)


def _iter_columns(table: pa.Table) -> Iterator[tuple[str, pd.Series]]:
    for column in RECORD_COLUMNS:
        if column.name not in table.column_names:  # a selection of columns
            continue
        chunked = table.column(column.name)
        if column.dtype == "str" and column.role == "key":
            yield column.name, pd.Series(chunked.to_numpy(zero_copy_only=False)).astype("str")
        elif column.dtype == "str":  # optional text: missing values are NA
            yield column.name, chunked.to_pandas().astype(object).astype("string")
        elif column.dtype in ("boolean", "Int64"):
            yield column.name, pd.Series(chunked.to_pandas(), dtype=column.dtype)
        else:
            yield column.name, chunked.to_pandas().astype(column.dtype)


def _to_frame(table: pa.Table) -> pd.DataFrame:
    """Stored parts back as records with the schema's dtypes (validated when written)."""
    return pd.DataFrame(dict(_iter_columns(table)))
