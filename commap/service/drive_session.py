"""A live drive along a plan: handover instructions ahead of time, re-plans when reality differs.

:class:`DriveSession` is the pure-library half of the gRPC ``Drive`` stream (no I/O, no
threads). It holds the current plan and follows the vehicle:

* every position fix is projected onto the planned route (along-route distance, distance from
  the route); the search looks near the last position first, so routes that pass the same
  place twice are followed in order;
* each planned handover is announced once, as soon as the vehicle could reach its point within
  ``lead_time_s + announce_margin_s`` (the estimate uses the faster of the measured and the
  planned speed, so the announcement errs early); an instruction therefore reaches the vehicle
  at least ``lead_time_s`` before the point unless the plan itself puts the handover closer than
  that (right after a start or a re-plan);
* the vehicle is *off route* when it stays farther than ``off_route_distance_m`` from the
  route for ``off_route_persist_s`` (GPS jumps of one fix do not count): the session asks for a
  re-plan from the vehicle's position to the destination (remaining waypoints kept);
* measurements *contradict the map* when ``contradiction_samples`` successive reports of one
  network disagree with the map about whether it is usable (SINR across the radio-link-failure
  threshold Qout by ``contradiction_margin_db``, or a lost connection where the map promised
  service) and the plan depends on it: the session asks for a re-plan of the rest of the route
  on a map that includes this drive's measurements.

:meth:`DriveSession.observe` is cheap (a few legs of the route near the last position, in
scalar math: tens of microseconds) and never plans;
:meth:`DriveSession.replan` does the blocking work through :func:`commap.service.planning.plan_route`,
so a server can run it off its event loop.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from commap.arrays import FloatArray
from commap.errors import InvalidInputError
from commap.geo.corridor import Route
from commap.geo.geodesy import EARTH_RADIUS_M, GEOD, to_local_m
from commap.map.comm_map import CommMap
from commap.plan.plan import Handover
from commap.radio.quality import QOUT_SINR_DB, CoverageLayer
from commap.service.planning import PlanRequest, PlanResult, plan_route

if TYPE_CHECKING:
    from commap.radio.layers.measured import MeasuredLayer

__all__ = [
    "DriveOptions",
    "DriveSession",
    "DriveUpdate",
    "Fix",
    "Instruction",
    "Replan",
    "ReplanReason",
    "RouteProgress",
    "measured_layers",
    "with_measured_layers",
    "with_measurements",
]

log = logging.getLogger(__name__)


_WINDOW_BACK_M = 300.0  # route searched behind the last position ...
_WINDOW_AHEAD_M = 3_000.0  # ... and ahead of it, before a search of the whole route
# metres of offset that one metre along the route ahead of / behind the last position is worth
_AHEAD_WEIGHT = 0.05
_BEHIND_WEIGHT = 0.5
_MIN_SPEED_MPS = 0.5  # below: the vehicle is taken as stopped
_SPEED_WINDOW_S = 3.0  # speed from the progress over about this long ...
_MIN_SPEED_SPAN_S = 0.5  # ... once fixes span at least this long
_UNUSABLE_RSRP_DBM = -125.0  # RSRP-only reports: below this the link is taken as unusable
_MAX_SESSION_RECORDS = 20_000  # measurements kept for re-plans (the newest)


class ReplanReason(StrEnum):
    """Why the session has (or wants) a new plan."""

    INITIAL = "initial"
    OFF_ROUTE = "off_route"
    MEASUREMENT_CONTRADICTION = "measurement_contradiction"


@dataclass(frozen=True, kw_only=True)
class DriveOptions:
    """How a drive session reacts.

    Parameters
    ----------
    lead_time_s : minimum time between an instruction and its handover point.
    announce_margin_s : announcements start this much before the lead time (covers the fix
        interval and speed changes).
    off_route_distance_m : distance from the route beyond which the vehicle may be off route.
    off_route_persist_s : how long it must stay beyond it.
    min_replan_interval_s : fewest seconds between two re-plans (vehicle clock).
    contradiction_margin_db : SINR distance from Qout a measurement and the map need to count
        as disagreeing.
    contradiction_samples : successive disagreeing reports of one network that trigger a
        re-plan.
    measurement_dense_samples : samples a cell of this drive's measurements needs to override
        the map in a re-plan (1: the vehicle's own fresh evidence wins).
    """

    lead_time_s: float = 10.0
    announce_margin_s: float = 5.0
    off_route_distance_m: float = 60.0
    off_route_persist_s: float = 2.0
    min_replan_interval_s: float = 5.0
    contradiction_margin_db: float = 3.0
    contradiction_samples: int = 3
    measurement_dense_samples: int = 1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidInputError(f"{f.name} must be a finite number >= 0", field=f.name)
        if self.off_route_distance_m <= 0:
            raise InvalidInputError(
                "off_route_distance_m must be > 0", field="off_route_distance_m"
            )
        if self.contradiction_samples < 1 or self.measurement_dense_samples < 1:
            raise InvalidInputError("sample counts must be >= 1", field="contradiction_samples")


@dataclass(frozen=True)
class Fix:
    """A position fix: epoch seconds, WGS84 degrees, optional ground speed."""

    t_s: float
    lon: float
    lat: float
    speed_mps: float | None = None


@dataclass(frozen=True)
class RouteProgress:
    """Where the vehicle is on the current plan's route."""

    t_s: float
    distance_m: float
    off_route_m: float
    network_id: str


@dataclass(frozen=True)
class Instruction:
    """Switch networks at a planned point.

    ``handover`` is the plan's :class:`~commap.plan.plan.Handover` (lat, lon, distance_m,
    eta_s, from/to network, kind).
    """

    plan_version: int
    handover: Handover
    distance_to_go_m: float
    time_to_go_s: float
    expected_t_s: float


@dataclass(frozen=True)
class Replan:
    """A request for a new plan, with the reason and what was observed."""

    reason: ReplanReason
    explanation: str
    fix: Fix


@dataclass(frozen=True)
class DriveUpdate:
    """What one fix produced: progress, instructions to send, and maybe a re-plan request."""

    progress: RouteProgress
    instructions: tuple[Instruction, ...] = ()
    replan: Replan | None = None


# -- geometry ---------------------------------------------------------------------------------
class _Track:
    """The planned route as a polyline with geodesic cumulative distances."""

    def __init__(self, lon: FloatArray, lat: FloatArray) -> None:
        _, _, leg_m = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
        keep = np.concatenate(([True], np.asarray(leg_m) > 1e-6))
        self.lon = np.asarray(lon, dtype=np.float64)[keep]
        self.lat = np.asarray(lat, dtype=np.float64)[keep]
        legs = np.asarray(leg_m, dtype=np.float64)[keep[1:]]
        self.cum_m = np.concatenate(([0.0], np.cumsum(legs)))
        self.leg_m = legs
        # the same as Python floats: a fix looks at a few legs, where numpy's per-call overhead
        # would cost more than the arithmetic
        self._lon_list: list[float] = self.lon.tolist()
        self._lat_list: list[float] = self.lat.tolist()
        self._cum_list: list[float] = self.cum_m.tolist()

    @property
    def length_m(self) -> float:
        return float(self.cum_m[-1])

    def _nearest(
        self, lon: float, lat: float, lo: int, hi: int, hint_m: float | None = None
    ) -> tuple[float, float]:
        """(along-route distance, offset) of the nearest point on legs ``lo..hi-1``.

        With a hint, candidates far along the route from it pay a small penalty, so that where
        the route passes the same place twice the pass the vehicle is on wins.
        """
        # route points in local metres relative to the fix: legs run from a to a + d
        x, y = to_local_m(self.lon[lo : hi + 1] - lon, self.lat[lo : hi + 1] - lat, lat0=lat)
        ax, ay = x[:-1], y[:-1]
        dx, dy = np.diff(x), np.diff(y)
        d2 = dx * dx + dy * dy
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.clip(np.where(d2 > 0, -(ax * dx + ay * dy) / d2, 0.0), 0.0, 1.0)
        off = np.hypot(ax + t * dx, ay + t * dy)
        along = self.cum_m[lo:hi] + t * self.leg_m[lo:hi]
        score = off
        if hint_m is not None:  # vehicles move forward: going back along the route costs more
            ahead = along - hint_m
            score = off + np.where(ahead >= 0, _AHEAD_WEIGHT * ahead, -_BEHIND_WEIGHT * ahead)
        i = int(np.argmin(score))
        return float(along[i]), float(off[i])

    def _nearest_from(
        self, lon: float, lat: float, lo: int, hi: int, hint_m: float
    ) -> tuple[float, float]:
        """:meth:`_nearest` with a hint, the same answer, searched outward from the hint.

        Every leg ahead of the hint scores at least ``_AHEAD_WEIGHT`` times its distance ahead,
        every leg behind at least ``_BEHIND_WEIGHT`` times its distance behind: the search
        stops each way at the first leg that cannot beat the best so far. A vehicle a few
        metres from its route, moving under 100 m between fixes, needs a handful of legs.
        """
        cum = self._cum_list
        kx_m = EARTH_RADIUS_M * math.cos(math.radians(lat))  # as in :func:`to_local_m`
        start = min(max(bisect.bisect_right(cum, hint_m) - 1, lo), hi - 1)
        best = (math.inf, 0.0, 0.0, hi)  # score, along, offset, leg
        for j in range(start, hi):  # legs from the hint's on: all ahead of it
            if _AHEAD_WEIGHT * (cum[j] - hint_m) > best[0]:
                break
            best = self._better(best, self._leg_score(lon, lat, kx_m, j, hint_m))
        for j in range(start - 1, lo - 1, -1):  # legs before it: all behind it
            if _BEHIND_WEIGHT * (hint_m - cum[j + 1]) > best[0]:
                break
            best = self._better(best, self._leg_score(lon, lat, kx_m, j, hint_m))
        return best[1], best[2]

    @staticmethod
    def _better(
        best: tuple[float, float, float, int], other: tuple[float, float, float, int]
    ) -> tuple[float, float, float, int]:
        """The lower score; on a tie the earlier leg (as ``numpy.argmin``)."""
        if other[0] < best[0] or (other[0] == best[0] and other[3] < best[3]):
            return other
        return best

    def _leg_score(
        self, lon: float, lat: float, kx_m: float, j: int, hint_m: float
    ) -> tuple[float, float, float, int]:
        """(score, along, offset, j) of the point of leg ``j`` nearest to a position.

        ``kx_m``: metres per radian of longitude at the fix (the local projection's scale).
        """
        ax = math.radians(self._lon_list[j] - lon) * kx_m
        ay = math.radians(self._lat_list[j] - lat) * EARTH_RADIUS_M
        dx = math.radians(self._lon_list[j + 1] - lon) * kx_m - ax
        dy = math.radians(self._lat_list[j + 1] - lat) * EARTH_RADIUS_M - ay
        d2 = dx * dx + dy * dy
        t = min(max(-(ax * dx + ay * dy) / d2, 0.0), 1.0) if d2 > 0 else 0.0
        off = math.hypot(ax + t * dx, ay + t * dy)
        along = self._cum_list[j] + t * (self._cum_list[j + 1] - self._cum_list[j])
        ahead = along - hint_m
        penalty = _AHEAD_WEIGHT * ahead if ahead >= 0 else -_BEHIND_WEIGHT * ahead
        return off + penalty, along, off, j

    def locate(
        self, lon: float, lat: float, hint_m: float | None, near_m: float
    ) -> tuple[float, float]:
        """Along-route distance and distance from the route of a position.

        With a hint, legs within a window around it are searched first; the whole route only
        if nothing there is within ``near_m``.
        """
        n_legs = self.leg_m.shape[0]
        if hint_m is not None:
            cum = self._cum_list
            lo = max(bisect.bisect_right(cum, hint_m - _WINDOW_BACK_M) - 1, 0)
            hi = min(bisect.bisect_left(cum, hint_m + _WINDOW_AHEAD_M) + 1, n_legs)
            along, off = self._nearest_from(lon, lat, lo, max(hi, lo + 1), hint_m)
            if off <= near_m or (lo == 0 and hi == n_legs):
                return along, off
            far_along, far_off = self._nearest(lon, lat, 0, n_legs, hint_m)  # rare: numpy
            return (far_along, far_off) if far_off < off else (along, off)
        return self._nearest(lon, lat, 0, n_legs)


# -- plan access --------------------------------------------------------------------------------
def _handovers(result: PlanResult) -> list[Handover]:
    return sorted(result.plan.handovers, key=lambda h: h.distance_m)


def _track_of(result: PlanResult) -> _Track:
    route = result.route
    if len(route.lon) >= 2:
        return _Track(
            np.asarray(route.lon, dtype=np.float64), np.asarray(route.lat, dtype=np.float64)
        )
    return _Track(result.corridor.lon, result.corridor.lat)


# -- measurements -------------------------------------------------------------------------------
def with_measurements(
    cmap: CommMap, records: pd.DataFrame, *, dense_min_samples: int = 5
) -> CommMap:
    """``cmap`` whose measured networks' layers are fused with ``records``.

    Each network with records gets a :class:`~commap.radio.layers.measured.FusedLayer` over its
    current layer: measured values win where a cell holds ``dense_min_samples`` records. The
    map object and other layers are shared, not copied.

    Parameters
    ----------
    cmap : a loaded map.
    records : validated measurement records (:func:`commap.radio.measurements.validate_records`).
    dense_min_samples : records an H3 cell needs for its values to override the layer.

    Examples
    --------
    >>> from commap.radio.measurements import empty_records
    >>> class _Map: pass
    >>> m = _Map()
    >>> with_measurements(m, empty_records()) is m  # no records: the same map
    True
    """
    if len(records) == 0:
        return cmap
    return with_measured_layers(cmap, measured_layers(records), dense_min_samples=dense_min_samples)


def measured_layers(records: pd.DataFrame) -> dict[str, MeasuredLayer]:
    """One measured layer per network of ``records`` (aggregated per H3 cell).

    The costly half of :func:`with_measurements` (time in proportion to the records): it needs
    no map, so it can run apart from the map's users (the server's fusion process).
    """
    from commap.radio.layers.measured import MeasuredLayer, aggregate_records

    return {
        str(network_id): MeasuredLayer(
            str(network_id), aggregate_records(rows.reset_index(drop=True))
        )
        for network_id, rows in records.groupby("network_id", sort=True)
    }


def with_measured_layers(
    cmap: CommMap, measured: Mapping[str, MeasuredLayer], *, dense_min_samples: int = 5
) -> CommMap:
    """``cmap`` with each network of ``measured`` fused with its measured layer (cheap).

    Raises
    ------
    InvalidInputError
        A measured network the map does not have.
    """
    if not measured:
        return cmap
    from commap.radio.layers.measured import FusedLayer

    layers: dict[str, CoverageLayer] = dict(cmap.layers)
    for nid, layer in measured.items():
        if nid not in layers:
            raise InvalidInputError(
                f"measurements name unknown network {nid!r}", field="network_id"
            )
        layers[nid] = FusedLayer(layers[nid], layer, dense_min_samples=dense_min_samples)
    return cmap.replaced(layers=layers)


def _column(frame: pd.DataFrame, name: str) -> FloatArray:
    if name not in frame:
        return np.full(len(frame), np.nan)
    return np.asarray(pd.to_numeric(frame[name], errors="coerce"), dtype=np.float64)


def _measured_usable(frame: pd.DataFrame, margin_db: float) -> tuple[NDArray[np.int8], FloatArray]:
    """Per record: +1 clearly usable, -1 clearly unusable, 0 undecided; and the SINR."""
    sinr = _column(frame, "sinr_db")
    rsrp = _column(frame, "rsrp_dbm")
    verdict = np.zeros(len(frame), dtype=np.int8)
    verdict[sinr >= QOUT_SINR_DB + margin_db] = 1
    verdict[sinr < QOUT_SINR_DB - margin_db] = -1
    rsrp_only = np.isnan(sinr) & np.isfinite(rsrp)
    verdict[rsrp_only & (rsrp < _UNUSABLE_RSRP_DBM)] = -1
    if "connected" in frame:
        lost = np.asarray(frame["connected"].astype("boolean").eq(False).fillna(False), dtype=bool)
        verdict[lost] = -1
    return verdict, sinr


# -- the session ----------------------------------------------------------------------------------
Planner = Callable[[CommMap, PlanRequest], PlanResult]


class DriveSession:
    """Follow one vehicle along its plan (see the module docstring).

    Use :meth:`start`; the constructor takes an existing plan (tests, replays).

    Parameters
    ----------
    cmap : the map plans are made on.
    request : the trip as first requested.
    result : the current plan.
    options : reaction settings.
    planner : the planning function (default :func:`commap.service.planning.plan_route`).
    """

    def __init__(
        self,
        cmap: CommMap,
        request: PlanRequest,
        result: PlanResult,
        *,
        options: DriveOptions | None = None,
        planner: Planner = plan_route,
    ) -> None:
        self.cmap = cmap
        self.request = request
        self.options = options or DriveOptions()
        self._planner = planner
        self.plan_version = 0
        self.reason = ReplanReason.INITIAL
        self.explanation = "plan at the start of the drive"
        self._records: list[pd.DataFrame] = []
        self._last_fix: Fix | None = None
        self._last_replan_t_s = -math.inf
        self._install(result, departure_s=None)

    @classmethod
    def start(
        cls,
        cmap: CommMap,
        request: PlanRequest,
        *,
        options: DriveOptions | None = None,
        planner: Planner = plan_route,
    ) -> DriveSession:
        """Plan the trip and open a session on it (blocking: it runs the planner)."""
        return cls(cmap, request, planner(cmap, request), options=options, planner=planner)

    # -- state ------------------------------------------------------------------------------------
    def _install(self, result: PlanResult, departure_s: float | None) -> None:
        self.result = result
        corridor = result.corridor
        self._corridor = corridor
        self._track = _track_of(result)
        self._networks = tuple(result.plan.segment_networks)
        # segment starts and speeds as Python floats: every fix looks one up (bisect, no numpy)
        self._segment_start_m: list[float] = corridor.distance_m.tolist()
        self._segment_speed_mps: list[float] = corridor.speed_mps.tolist()
        self._handovers = _handovers(result)
        self._next_handover = 0
        self._along_m: float | None = None
        self._off_since_t_s: float | None = None
        self._speed_mps: float | None = None
        self._history: deque[tuple[float, float]] = deque()
        self._strikes: dict[str, int] = {}
        self._departure_s = corridor.departure_s if departure_s is None else departure_s

    def _segment(self, along_m: float) -> int:
        i = bisect.bisect_right(self._segment_start_m, along_m) - 1
        return min(max(i, 0), len(self._segment_start_m) - 1)

    def network_at(self, along_m: float) -> str:
        """The planned network at an along-route distance."""
        return self._networks[self._segment(along_m)]

    # -- observing --------------------------------------------------------------------------------
    def _check_fix(self, fix: Fix) -> None:
        for name in ("t_s", "lon", "lat"):
            if not math.isfinite(getattr(fix, name)):
                raise InvalidInputError(f"fix.{name}: must be finite", field=f"fix.{name}")
        if abs(fix.lat) > 90 or abs(fix.lon) > 180:
            raise InvalidInputError(
                f"fix: ({fix.lat}, {fix.lon}) is not a WGS84 position", field="fix.position"
            )
        if self._last_fix is not None and fix.t_s <= self._last_fix.t_s:
            raise InvalidInputError(
                f"fix.time: {fix.t_s:.3f} is not after the previous fix ({self._last_fix.t_s:.3f}); "
                "fixes must be sent in time order",
                field="fix.time",
            )

    def _update_speed(self, fix: Fix, along_m: float) -> None:
        """Ground speed: the receiver's, else along-route progress over the last few seconds.

        A window rather than successive fixes: at 10 Hz, metres of position noise between two
        fixes would read as tens of m/s.
        """
        history = self._history
        history.append((fix.t_s, along_m))
        while len(history) > 2 and fix.t_s - history[1][0] >= _SPEED_WINDOW_S:
            history.popleft()
        if fix.speed_mps is not None and math.isfinite(fix.speed_mps) and fix.speed_mps >= 0:
            self._speed_mps = fix.speed_mps
            return
        t0, along0 = history[0]
        if fix.t_s - t0 >= _MIN_SPEED_SPAN_S:
            self._speed_mps = max(along_m - along0, 0.0) / (fix.t_s - t0)

    def observe(self, fix: Fix, measurements: pd.DataFrame | None = None) -> DriveUpdate:
        """Take one fix (and the measurements reported with it).

        Returns
        -------
        DriveUpdate
            Route progress, the instructions due now, and a :class:`Replan` when a new plan is needed
            (call :meth:`replan` with it; until then the current plan stays in force).

        Raises
        ------
        InvalidInputError
            Non-finite or out-of-range fix, or a fix not after the previous one.
        """
        self._check_fix(fix)
        along_m, off_m = self._track.locate(
            fix.lon, fix.lat, self._along_m, self.options.off_route_distance_m
        )
        self._update_speed(fix, along_m)
        self._along_m = along_m
        self._last_fix = fix
        segment = self._segment(along_m)
        progress = RouteProgress(
            t_s=fix.t_s, distance_m=along_m, off_route_m=off_m, network_id=self._networks[segment]
        )
        replan = self._off_route(fix, off_m)
        if measurements is not None and len(measurements):
            self._remember(measurements)
            if replan is None:
                replan = self._contradiction(fix, along_m, measurements)
        on_route = off_m <= self.options.off_route_distance_m
        instructions = self._due(fix, along_m, segment) if on_route else ()
        if (
            replan is not None
            and fix.t_s - self._last_replan_t_s < self.options.min_replan_interval_s
        ):
            log.debug("re-plan (%s) suppressed: last re-plan too recent", replan.reason)
            replan = None
        return DriveUpdate(progress=progress, instructions=instructions, replan=replan)

    def _due(self, fix: Fix, along_m: float, segment: int) -> tuple[Instruction, ...]:
        """Instructions whose point is within the announcement horizon (each sent once)."""
        if self._next_handover >= len(self._handovers):
            return ()
        horizon_s = self.options.lead_time_s + self.options.announce_margin_s
        planned_mps = self._segment_speed_mps[segment]
        measured_mps = self._speed_mps if self._speed_mps is not None else 0.0
        fast_mps = max(measured_mps, planned_mps, _MIN_SPEED_MPS)
        out = []
        while self._next_handover < len(self._handovers):
            handover = self._handovers[self._next_handover]
            to_go_m = float(handover.distance_m) - along_m
            if to_go_m < 0:  # passed without announcement (started or re-joined past it)
                self._next_handover += 1
                continue
            if to_go_m / fast_mps > horizon_s:
                break
            time_to_go_s = self._time_to_go(handover, along_m, to_go_m, measured_mps)
            out.append(
                Instruction(
                    plan_version=self.plan_version,
                    handover=handover,
                    distance_to_go_m=to_go_m,
                    time_to_go_s=time_to_go_s,
                    expected_t_s=fix.t_s + time_to_go_s,
                )
            )
            self._next_handover += 1
        return tuple(out)

    def _time_to_go(
        self, handover: Handover, along_m: float, to_go_m: float, measured_mps: float
    ) -> float:
        if measured_mps >= _MIN_SPEED_MPS:
            return to_go_m / measured_mps
        # stopped or unknown speed: the plan's own timing from here to the point
        i = self._segment(along_m)
        frac = (along_m - float(self._corridor.distance_m[i])) / max(
            float(self._corridor.length_m[i]), 1e-9
        )
        eta_here = float(self._corridor.eta_s[i]) + frac * float(self._corridor.duration_s[i])
        return max(float(handover.eta_s) - eta_here, 0.0)

    def _off_route(self, fix: Fix, off_m: float) -> Replan | None:
        if off_m <= self.options.off_route_distance_m:
            self._off_since_t_s = None
            return None
        if self._off_since_t_s is None:
            self._off_since_t_s = fix.t_s
        persisted_s = fix.t_s - self._off_since_t_s
        if persisted_s < self.options.off_route_persist_s:
            return None
        return Replan(
            reason=ReplanReason.OFF_ROUTE,
            explanation=(
                f"vehicle {off_m:.0f} m from the planned route (limit "
                f"{self.options.off_route_distance_m:.0f} m) for {persisted_s:.1f} s at "
                f"({fix.lat:.5f}, {fix.lon:.5f}); re-planned from there to the destination"
            ),
            fix=fix,
        )

    def _remember(self, measurements: pd.DataFrame) -> None:
        self._records.append(measurements)
        total = sum(len(r) for r in self._records)
        while total > _MAX_SESSION_RECORDS and len(self._records) > 1:
            total -= len(self._records.pop(0))

    def _map_sinr(self, network_id: str, frame: pd.DataFrame, along_m: float) -> FloatArray:
        """What the map predicts for ``network_id`` at the measurement points and times."""
        segment = self._segment(along_m)
        n = len(frame)
        t_s = frame["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
        quality = self.cmap.layers[network_id].sample(
            _column(frame, "lon"),
            _column(frame, "lat"),
            np.asarray(t_s, dtype=np.float64),
            in_tunnel=np.full(n, bool(self._corridor.in_tunnel[segment])),
            under_bridge=np.full(n, bool(self._corridor.under_bridge[segment])),
        )
        return np.asarray(quality.sinr_db, dtype=np.float64)

    def _contradiction(self, fix: Fix, along_m: float, measurements: pd.DataFrame) -> Replan | None:
        planned = self.network_at(along_m)
        margin = self.options.contradiction_margin_db
        for network_id, rows in measurements.groupby("network_id", sort=True):
            nid = str(network_id)
            if nid not in self.cmap.layers:
                raise InvalidInputError(
                    f"measurements: unknown network {nid!r}; known: {', '.join(self.cmap.catalogue.ids)}",
                    field="measurements.network_id",
                )
            verdict, sinr = _measured_usable(rows, margin)
            predicted = self._map_sinr(nid, rows, along_m)
            map_verdict = np.where(
                predicted >= QOUT_SINR_DB + margin,
                1,
                np.where(predicted < QOUT_SINR_DB - margin, -1, 0),
            )
            # matters for the plan: the planned network fails, or another one works where the
            # map wrote it off
            relevant = (nid == planned) & (verdict == -1) & (map_verdict == 1)
            relevant |= (nid != planned) & (verdict == 1) & (map_verdict == -1)
            for k in range(len(rows)):
                self._strikes[nid] = self._strikes.get(nid, 0) + 1 if relevant[k] else 0
            if self._strikes.get(nid, 0) >= self.options.contradiction_samples:
                self._strikes[nid] = 0
                return Replan(
                    reason=ReplanReason.MEASUREMENT_CONTRADICTION,
                    explanation=_contradiction_text(
                        nid,
                        planned,
                        sinr[-1],
                        predicted[-1],
                        along_m,
                        self.options.contradiction_samples,
                    ),
                    fix=fix,
                )
        return None

    # -- re-planning --------------------------------------------------------------------------------
    def session_records(self) -> pd.DataFrame:
        """Measurements reported during this drive (the newest, bounded)."""
        from commap.radio.measurements import empty_records

        return pd.concat(self._records, ignore_index=True) if self._records else empty_records()

    def _remaining_route(self, along_m: float) -> Route:
        """The planned route from ``along_m`` to its end (same roads, no re-routing)."""
        track = self._track
        n_vertices = track.cum_m.shape[0]
        i = min(max(int(np.searchsorted(track.cum_m, along_m, side="right")), 1), n_vertices - 1)
        frac = min(max((along_m - track.cum_m[i - 1]) / max(track.leg_m[i - 1], 1e-9), 0.0), 1.0)
        lon0 = track.lon[i - 1] + frac * (track.lon[i] - track.lon[i - 1])
        lat0 = track.lat[i - 1] + frac * (track.lat[i] - track.lat[i - 1])
        lon = np.concatenate(([lon0], track.lon[i:]))
        lat = np.concatenate(([lat0], track.lat[i:]))
        along = np.concatenate(([along_m], track.cum_m[i:]))
        if track.length_m - along_m < 1.0:
            raise InvalidInputError(
                "the vehicle is at the end of its route: nothing to re-plan", field="fix"
            )
        # speed and flags of each leg from the corridor segment under the leg's middle
        segments = np.clip(
            np.searchsorted(self._corridor.distance_m, (along[:-1] + along[1:]) / 2, side="right")
            - 1,
            0,
            len(self._corridor) - 1,
        )
        return Route(
            lon=lon,
            lat=lat,
            speed_mps=np.maximum(self._corridor.speed_mps[segments], _MIN_SPEED_MPS),
            in_tunnel=self._corridor.in_tunnel[segments].astype(bool),
            on_bridge=self._corridor.on_bridge[segments].astype(bool),
            name="remaining route",
        )

    def _remaining_waypoints(self) -> tuple[tuple[float, float], ...]:
        ahead = []
        for lon, lat in self.request.waypoints:
            along, _ = self._track.locate(lon, lat, None, 0.0)
            if self._along_m is None or along > self._along_m:
                ahead.append((lon, lat))
        return tuple(ahead)

    def current_network(self) -> str:
        """The network the vehicle is on: the plan's network where it was last located.

        Before the first fix, the plan's first network. Instructions are sent ahead of each
        planned switch, so the vehicle follows the plan: the plan is the best knowledge of it.
        """
        along = self._along_m if self._along_m is not None else 0.0
        return self.network_at(along)

    def replan_request(self, replan: Replan) -> PlanRequest:
        """The request for a new plan from the vehicle's position (see :meth:`replan`).

        The new plan starts on :meth:`current_network` (``initial_network``): a vehicle on a
        failing network still has to switch away from it, and that switch is a handover the
        new plan must contain, announce and pay for.
        """
        fix = replan.fix
        base = dataclasses.replace(
            self.request,
            departure_s=fix.t_s,
            alternatives=1,
            initial_network=self.current_network(),
        )
        if replan.reason is ReplanReason.OFF_ROUTE:
            destination = self.request.destination
            if destination is None:
                destination = (float(self._track.lon[-1]), float(self._track.lat[-1]))
            return dataclasses.replace(
                base,
                origin=(fix.lon, fix.lat),
                destination=destination,
                waypoints=self._remaining_waypoints(),
                route=None,
            )
        along = self._along_m if self._along_m is not None else 0.0
        return dataclasses.replace(
            base, origin=None, destination=None, waypoints=(), route=self._remaining_route(along)
        )

    def replan(self, replan: Replan, *, cmap: CommMap | None = None) -> PlanResult:
        """Make and install a new plan (blocking: it runs the planner).

        Parameters
        ----------
        replan : from :meth:`observe`.
        cmap : the map to plan on (default: the session's map); this drive's measurements are
            fused into it.

        Returns
        -------
        PlanResult
            The new plan, now current (:attr:`plan_version` incremented, :attr:`reason` and
            :attr:`explanation` set).
        """
        base_map = cmap if cmap is not None else self.cmap
        records = self.session_records()
        planning_map = with_measurements(
            base_map, records, dense_min_samples=self.options.measurement_dense_samples
        )
        request = self.replan_request(replan)
        if request.initial_network not in planning_map.catalogue.ids:
            # the map was reloaded without that network: the vehicle is not bound to it
            request = dataclasses.replace(request, initial_network=None)
        result = self._planner(planning_map, request)
        self.cmap = base_map
        self.plan_version += 1
        self.reason = replan.reason
        self.explanation = replan.explanation
        self._last_replan_t_s = replan.fix.t_s
        self._install(result, departure_s=replan.fix.t_s)
        log.info(
            "drive re-planned (version %d, %s): %s",
            self.plan_version,
            replan.reason,
            replan.explanation,
        )
        return result


def _contradiction_text(
    network_id: str,
    planned: str,
    measured_sinr_db: float,
    map_sinr_db: float,
    along_m: float,
    samples: int,
) -> str:
    measured = (
        "no connection"
        if not math.isfinite(measured_sinr_db)
        else f"SINR {measured_sinr_db:.1f} dB"
    )
    what = "the planned network" if network_id == planned else f"{network_id} (plan uses {planned})"
    return (
        f"{samples} successive measurements of {what} at {along_m / 1000:.2f} km contradict the map: "
        f"measured {measured}, map {map_sinr_db:.1f} dB (Qout {QOUT_SINR_DB:.1f} dB); "
        "re-planned the rest of the route with this drive's measurements"
    )
