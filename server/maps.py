"""The maps a server serves, with the fleet measurements they have received.

Each served map keeps the map as built (``base``) and the map requests use (``current``): the
base with every network that has stored fleet measurements wrapped in a fused layer (measured
values override modelled ones where dense). Storing a batch appends a durable part file (fsynced
before the call is acknowledged) and then swaps ``current`` for a map rebuilt from all stored
records, so calls in flight keep a consistent map and later calls see the new data.

Measurements live in ``<maps_dir>/<name>/measurements/`` beside the built map (a map rebuild
replaces ``built/`` but must not lose fleet data), or under ``--measurements-dir/<name>/``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from commap.comm_map import CommMap
from commap.errors import InvalidInputError, MapNotFoundError
from server.config import ServerConfig

__all__ = ["FLEET_DENSE_MIN_SAMPLES", "MapStore", "ServedMap", "fuse_measurements"]

log = logging.getLogger(__name__)


@dataclass
class ServedMap:
    """One served map and its stored fleet measurements."""

    base: CommMap
    measurements_dir: Path
    current: CommMap
    measurement_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        """Map name."""
        return self.base.name


# Fleet data: a cell's measurements override the modelled value once it holds this many (one
# vehicle pass at 30-50 km/h leaves about 4-6 one-second samples in a 50 m cell).
FLEET_DENSE_MIN_SAMPLES = 5


def fuse_measurements(base: CommMap, records: pd.DataFrame) -> CommMap:
    """``base`` with each measured network's layer fused with its rows of ``records``.

    Networks without records keep their layer object, so nothing is recomputed for them.

    Examples
    --------
    >>> from commap.measurements import empty_records
    >>> fuse_measurements(None, empty_records()) is None  # no records: the map as it is
    True
    """
    if len(records) == 0:
        return base
    from commap.drive_session import with_measurements

    return with_measurements(base, records, dense_min_samples=FLEET_DENSE_MIN_SAMPLES)


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

    def _measurements_dir(self, cmap: CommMap) -> Path:
        if self._config.measurements_dir is not None:
            return self._config.measurements_dir / cmap.name
        directory = cmap.directory
        # maps/<name>/built -> maps/<name>/measurements: survives `make map` rebuilds
        return (directory.parent if directory.name == "built" else directory) / "measurements"

    def load_all(self) -> None:
        """Load every configured map and its stored measurements (blocking: call in a thread).

        Raises
        ------
        MapNotFoundError, InvalidInputError
            A configured map is missing or corrupt (the server must not start half-configured).
        """
        maps: dict[str, ServedMap] = {}
        for name in self._config.map_names:
            base = CommMap.load(name, settings=self._config.settings)
            if base.name in maps:
                raise InvalidInputError(f"map {base.name!r} is configured twice", field="maps")
            served = ServedMap(
                base=base, measurements_dir=self._measurements_dir(base), current=base
            )
            self._refresh(served)
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
                f"map {key!r} is not served here; served maps: {served}"
            ) from None

    def _stored_records(self, served: ServedMap) -> pd.DataFrame:
        from commap.measurements import empty_records, read_records_dir

        if not served.measurements_dir.is_dir():
            return empty_records()
        return read_records_dir(served.measurements_dir, known_networks=served.base.catalogue.ids)

    def _refresh(self, served: ServedMap) -> None:
        records = self._stored_records(served)
        served.current = fuse_measurements(served.base, records)
        served.measurement_count = len(records)

    def store_measurements(self, name: str, records: pd.DataFrame) -> tuple[str, int]:
        """Store one batch durably, then let later requests use it (blocking: call in a thread).

        Returns
        -------
        tuple of (str, int)
            The batch id (part file name) and the number of records the map now holds.

        Raises
        ------
        InvalidInputError
            The batch does not validate (nothing is stored).
        """
        from commap.measurements import append_records

        served = self.get(name)
        with served.lock:  # one writer per map: parts and the fused map stay in step
            part = append_records(
                records, served.measurements_dir, known_networks=served.base.catalogue.ids
            )
            log.info("map %s: stored %d measurements in %s", served.name, len(records), part.name)
            try:
                self._refresh(served)
            except Exception:  # stored data is safe; the fused view catches up on the next batch
                log.exception("map %s: measurements stored but not yet fused", served.name)
        return part.stem, served.measurement_count
