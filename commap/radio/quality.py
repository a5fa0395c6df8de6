"""Quality values, their provenance, and the coverage-layer protocol.

Conventions shared by every layer:

* ``rsrp_dbm``: best-server reference signal received power. ``NO_SIGNAL_RSRP_DBM`` where
  there is no usable signal; NaN for satellite networks (not applicable).
* ``sinr_db``: best-server signal to interference plus noise ratio. ``NO_SIGNAL_SINR_DB`` where
  there is no signal. Satellite layers fill an equivalent SINR from their link budget so that one
  link model serves every network.
* ``elevation_deg``: best satellite elevation (satellite layers), ``NO_SATELLITE_ELEVATION_DEG``
  when none is visible or the sky is blocked; NaN for terrestrial networks.
* ``confidence``: 0..1, how much to trust the value (modelled values get the layer's confidence,
  measured values grow with the sample count).
* ``provenance``: :class:`Provenance` code per value.
* ``outage_prob``: the probability that the network cannot carry a link at the point, where the
  layer predicts it directly (a learned map from measurements); NaN where the layer gives only
  signal levels, and the link model derives it from them.
* ``unknown``: True where the layer has no evidence near the point and answers with its prior
  (a wide distribution, never "no coverage").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from commap.arrays import BoolArray, FloatArray
from commap.errors import InvalidInputError

__all__ = [
    "NO_SATELLITE_ELEVATION_DEG",
    "NO_SIGNAL_RSRP_DBM",
    "NO_SIGNAL_SINR_DB",
    "QIN_SINR_DB",
    "QOUT_SINR_DB",
    "USABLE_SINR_DB",
    "CoverageLayer",
    "Provenance",
    "Quality",
    "QualityMatrix",
    "as_points",
    "as_sample_points",
]

NO_SIGNAL_RSRP_DBM = -160.0
NO_SIGNAL_SINR_DB = -30.0
NO_SATELLITE_ELEVATION_DEG = -90.0
# Radio link monitoring thresholds (3GPP TS 36.133 / 38.133): a link in service goes out of sync
# below Qout (and fails if it stays there); a link is in sync, or can be set up, above Qin.
QOUT_SINR_DB = -5.0
QIN_SINR_DB = -3.9
# What "usable" means wherever a person reads it (tables, plots, the viewer, reports, exports):
# SINR at or above Qin. Above Qin a terminal can attach to the network and hold the link in sync;
# between Qout and Qin a link already up survives but none can be set up, so a map that called
# that stretch usable would promise switches that fail. It is also the evaluation's definition
# (commap.sim.truth: a drop is avoidable where some network was usable). Not to be confused with
# the closed-loop execution margin (commap.plan.execution.ExecutionRules.min_target_sinr_db,
# Qin + 3 dB): how far above usable a planned target must measure before a switch is executed.
USABLE_SINR_DB = QIN_SINR_DB


_ALL = slice(None)


def _fill_optional(quality: Quality | QualityMatrix, shape: tuple[int, ...]) -> None:
    """Fill the optional arrays of a (frozen) quality object: NaN outage, all known."""
    if quality.outage_prob is None:
        object.__setattr__(quality, "outage_prob", np.full(shape, np.nan))
    if quality.unknown is None:
        object.__setattr__(quality, "unknown", np.zeros(shape, dtype=np.bool_))


class Provenance(IntEnum):
    """Where a quality value comes from."""

    NONE = 0  # no source covers this point
    MODELLED = 1
    MEASURED = 2


@dataclass(frozen=True)
class Quality:
    """Quality of one network at ``n`` points (all arrays have shape ``(n,)``)."""

    rsrp_dbm: FloatArray
    sinr_db: FloatArray
    elevation_deg: FloatArray
    confidence: FloatArray
    provenance: NDArray[np.int8]
    sample_count: NDArray[np.int32]
    outage_prob: FloatArray | None = None
    unknown: BoolArray | None = None

    def __post_init__(self) -> None:
        _fill_optional(self, self.sinr_db.shape)

    def __len__(self) -> int:
        return int(self.sinr_db.shape[0])

    @classmethod
    def empty(cls, n: int, *, satellite: bool = False) -> Quality:
        """No signal anywhere (``n`` points), provenance NONE.

        Examples
        --------
        >>> len(Quality.empty(0))
        0
        >>> float(Quality.empty(2).sinr_db[0])
        -30.0
        """
        nan = np.full(n, np.nan)
        return cls(
            rsrp_dbm=nan.copy() if satellite else np.full(n, NO_SIGNAL_RSRP_DBM),
            sinr_db=np.full(n, NO_SIGNAL_SINR_DB),
            elevation_deg=np.full(n, NO_SATELLITE_ELEVATION_DEG) if satellite else nan.copy(),
            confidence=np.zeros(n),
            provenance=np.zeros(n, dtype=np.int8),
            sample_count=np.zeros(n, dtype=np.int32),
        )


@runtime_checkable
class CoverageLayer(Protocol):
    """One network's coverage: quality for arrays of points and times.

    ``lon``/``lat`` are WGS84 degrees, ``t_s`` seconds since the Unix epoch (UTC).
    ``in_tunnel`` and ``under_bridge`` mark points whose sky (and, in tunnels, every
    terrestrial signal) is blocked; both default to all False.
    """

    network_id: str

    def sample(
        self,
        lon: FloatArray,
        lat: FloatArray,
        t_s: FloatArray,
        *,
        in_tunnel: BoolArray | None = None,
        under_bridge: BoolArray | None = None,
    ) -> Quality:
        """Quality of this layer's network at the given points."""
        ...


@dataclass(frozen=True)
class QualityMatrix:
    """Quality of every network along a corridor: arrays of shape ``(segments, networks)``."""

    network_ids: tuple[str, ...]
    rsrp_dbm: FloatArray
    sinr_db: FloatArray
    elevation_deg: FloatArray
    confidence: FloatArray
    provenance: NDArray[np.int8]
    sample_count: NDArray[np.int32]
    outage_prob: FloatArray | None = None
    unknown: BoolArray | None = None

    def __post_init__(self) -> None:
        _fill_optional(self, self.sinr_db.shape)

    @property
    def shape(self) -> tuple[int, int]:
        """``(segments, networks)``."""
        return (int(self.sinr_db.shape[0]), len(self.network_ids))

    @classmethod
    def from_columns(cls, network_ids: tuple[str, ...], columns: list[Quality]) -> QualityMatrix:
        """Stack one :class:`Quality` per network into a matrix."""
        if len(network_ids) != len(columns):
            raise InvalidInputError("one quality column per network is required")

        def stack(name: str, dtype: type) -> NDArray[Any]:
            if not columns:
                return np.zeros((0, 0), dtype=dtype)
            return np.stack([getattr(q, name) for q in columns], axis=1).astype(dtype)

        return cls(
            network_ids=network_ids,
            rsrp_dbm=stack("rsrp_dbm", np.float64),
            sinr_db=stack("sinr_db", np.float64),
            elevation_deg=stack("elevation_deg", np.float64),
            confidence=stack("confidence", np.float64),
            provenance=stack("provenance", np.int8),
            sample_count=stack("sample_count", np.int32),
            outage_prob=stack("outage_prob", np.float64),
            unknown=stack("unknown", np.bool_),
        )

    def take(
        self, rows: slice | NDArray[np.intp] = _ALL, columns: Sequence[str] | None = None
    ) -> QualityMatrix:
        """The matrix restricted to ``rows`` (segments) and ``columns`` (network ids, in order).

        Examples
        --------
        >>> m = QualityMatrix.from_columns(("a", "b"), [Quality.empty(3), Quality.empty(3)])
        >>> m.take(slice(0, 2), ["b"]).shape
        (2, 1)
        >>> m.take(slice(0, 0)).shape
        (0, 2)
        """
        ids = self.network_ids if columns is None else tuple(columns)
        keep = np.array([self.network_ids.index(n) for n in ids], dtype=np.intp)

        def cut(values: NDArray[Any]) -> NDArray[Any]:
            return values[rows][:, keep]

        return QualityMatrix(
            network_ids=ids,
            rsrp_dbm=cut(self.rsrp_dbm),
            sinr_db=cut(self.sinr_db),
            elevation_deg=cut(self.elevation_deg),
            confidence=cut(self.confidence),
            provenance=cut(self.provenance),
            sample_count=cut(self.sample_count),
            outage_prob=cut(self._outage_prob),
            unknown=cut(self._unknown),
        )

    @property
    def _outage_prob(self) -> FloatArray:
        assert self.outage_prob is not None  # filled by __post_init__
        return self.outage_prob

    @property
    def _unknown(self) -> BoolArray:
        assert self.unknown is not None  # filled by __post_init__
        return self.unknown

    def column(self, network_id: str) -> Quality:
        """The quality of one network along the corridor.

        Raises
        ------
        InvalidInputError
            ``network_id`` is not a column of this matrix.
        """
        if network_id not in self.network_ids:
            raise InvalidInputError(
                f"unknown network {network_id!r}; known: {', '.join(self.network_ids)}",
                field="network_id",
            )
        j = self.network_ids.index(network_id)
        return Quality(
            rsrp_dbm=self.rsrp_dbm[:, j],
            sinr_db=self.sinr_db[:, j],
            elevation_deg=self.elevation_deg[:, j],
            confidence=self.confidence[:, j],
            provenance=self.provenance[:, j],
            sample_count=self.sample_count[:, j],
            outage_prob=self._outage_prob[:, j],
            unknown=self._unknown[:, j],
        )


def as_points(
    lon: object, lat: object, t_s: object | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Validate and broadcast point arrays (WGS84 degrees, epoch seconds).

    Raises
    ------
    InvalidInputError
        On NaN/inf, out-of-range coordinates or mismatched shapes.

    Examples
    --------
    >>> lon, lat, t = as_points([], [])
    >>> lon.shape, t.shape
    ((0,), (0,))
    """
    lon_a = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    lat_a = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    if lon_a.shape != lat_a.shape or lon_a.ndim != 1:
        raise InvalidInputError("lon and lat must be 1-D arrays of the same length")
    t_a = (
        np.zeros_like(lon_a)
        if t_s is None
        else np.broadcast_to(np.asarray(t_s, dtype=np.float64), lon_a.shape).copy()
    )
    if not (np.isfinite(lon_a).all() and np.isfinite(lat_a).all() and np.isfinite(t_a).all()):
        raise InvalidInputError("coordinates and times must be finite numbers")
    if (np.abs(lat_a) > 90).any() or (np.abs(lon_a) > 180).any():
        raise InvalidInputError(
            "latitude must be within [-90, 90] and longitude within [-180, 180]"
        )
    return lon_a, lat_a, t_a


def as_sample_points(
    lon: object,
    lat: object,
    t_s: object | None = None,
    *,
    in_tunnel: object | None = None,
    under_bridge: object | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray, BoolArray]:
    """:func:`as_points` plus the ``in_tunnel`` / ``under_bridge`` flags of a layer's ``sample``.

    Missing flags are all False; given ones are flattened to one bool per point.

    Raises
    ------
    InvalidInputError
        Malformed points (see :func:`as_points`) or a flag array without one flag per point.

    Examples
    --------
    >>> lon, lat, t, tunnel, bridge = as_sample_points([1.5], [42.5], 0.0, in_tunnel=[1])
    >>> tunnel.tolist(), bridge.tolist()
    ([True], [False])
    >>> as_sample_points([], [])[3].shape
    (0,)
    >>> as_sample_points([1.5], [42.5], under_bridge=[True, False])
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: under_bridge must have one flag per point (1), got 2
    """
    lon_a, lat_a, t_a = as_points(lon, lat, t_s)
    flags = []
    for name, values in (("in_tunnel", in_tunnel), ("under_bridge", under_bridge)):
        if values is None:
            flags.append(np.zeros(lon_a.size, dtype=bool))
            continue
        flag = np.asarray(values, dtype=bool).reshape(-1)
        if flag.shape != lon_a.shape:
            raise InvalidInputError(
                f"{name} must have one flag per point ({lon_a.size}), got {flag.size}", field=name
            )
        flags.append(flag)
    return lon_a, lat_a, t_a, flags[0], flags[1]
