"""Plans: the network per segment, handover events, totals, solver report, and their files.

:func:`solve` runs the right solver for a :class:`~commap.plan.problem.HandoverProblem` (the
exact DP when there is no global constraint, CP-SAT otherwise), sends the result through the
independent evaluator and wraps it in a :class:`Plan`. :func:`plan_corridor` builds the problem
first. :func:`write_plan` writes JSON, GeoJSON (EPSG:4326) or a GeoPackage (layers
``stretches`` and ``handovers``), atomically.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from commap.arrays import FloatArray, IntArray
from commap.errors import CommapError, InvalidInputError
from commap.files import atomic_path, write_text_atomic
from commap.geo.corridor import Corridor
from commap.networks import NetworkCatalogue
from commap.plan import defaults
from commap.plan.confidence import vouched_assignment
from commap.plan.cpsat import solve_cpsat
from commap.plan.dp import solve_dp
from commap.plan.evaluator import Evaluation, evaluate_plan
from commap.plan.problem import Constraints, HandoverProblem
from commap.radio.link import AppProfile, LinkModel, Objective
from commap.radio.quality import Provenance, QualityMatrix
from commap.radio.vehicle import VehicleSetup
from commap.timeutil import format_time

__all__ = [
    "SOLVERS",
    "Handover",
    "Plan",
    "PlanTotals",
    "SolverReport",
    "make_plan",
    "plan_corridor",
    "read_plan_document",
    "solve",
    "write_plan",
]

log = logging.getLogger(__name__)


SOLVERS = ("auto", "dp", "cpsat")
_FORMAT = "commap-plan/1"
_PLAN_TABLE = "plan"  # the GeoPackage table holding the whole plan as JSON


@dataclass(frozen=True)
class Handover:
    """One planned switch, at the start of segment ``segment``.

    ``lat``/``lon`` (WGS84) is the boundary between the two segments, ``distance_m`` and
    ``eta_s`` are measured from the route start and the departure. ``prepare_s``: how long
    before the switch the vehicle starts preparing it (registering the standby modem on the
    target operator, waking an on-demand satellite terminal); 0 when there is nothing to prepare.
    """

    segment: int
    lat: float
    lon: float
    distance_m: float
    eta_s: float
    from_network: str
    to_network: str
    kind: str
    failure_prob: float
    interruption_s: float
    prepare_s: float = 0.0


@dataclass(frozen=True)
class SolverReport:
    """How the plan was made and how good it is proven to be.

    ``status`` (``OPTIMAL`` or ``FEASIBLE``), ``objective``, ``bound`` and ``gap`` (``(objective
    - bound) / objective``) are those of the solver's own plan, the least expected cost it
    found. The plan returned can differ from it on purpose: ``merged_switches`` switches the
    map cannot vouch for (:mod:`commap.plan.confidence`) were merged away after the solver,
    which added ``merge_cost`` to the objective and ``merge_loss_s`` expected seconds of lost
    service (``merge_loss_share`` of the solver's plan's). The returned plan's own cost is in
    :attr:`PlanTotals.cost`.
    """

    name: str
    status: str
    objective: float
    bound: float
    gap: float
    time_s: float
    detail: str = ""
    merged_switches: int = 0
    merge_cost: float = 0.0
    merge_loss_s: float = 0.0
    merge_loss_share: float = 0.0

    @property
    def merge_summary(self) -> str:
        """One line on the merge (empty when nothing was merged).

        Examples
        --------
        >>> SolverReport("dp", "OPTIMAL", 10.0, 10.0, 0.0, 0.01, merged_switches=2,
        ...              merge_cost=0.4, merge_loss_s=0.42, merge_loss_share=0.042).merge_summary
        '2 switches the map cannot vouch for merged away: +0.42 s expected loss (+4.2 %)'
        """
        if self.merged_switches == 0:
            return ""
        return (
            f"{self.merged_switches} switches the map cannot vouch for merged away: "
            f"{self.merge_loss_s:+.2f} s expected loss ({100 * self.merge_loss_share:+.1f} %)"
        )


@dataclass(frozen=True)
class PlanTotals:
    """Route totals of a plan (see :class:`commap.plan.evaluator.Evaluation`)."""

    cost: float
    expected_drops: float
    outage_drops: float
    handover_drops: float
    handovers: int
    handovers_by_kind: dict[str, int]
    outage_s: float
    interruption_s: float
    sat_mb: float
    latency_violation_s: float
    time_share: dict[str, float]
    length_m: float
    duration_s: float
    expected_loss_s: float = 0.0  # expected seconds without the application's service
    loss_events: float = 0.0  # expected gaps the application notices


@dataclass(frozen=True, eq=False)
class Plan:
    """A network per segment, its handovers, totals and the solver's report.

    Per-segment arrays (one entry per corridor segment): ``assignment`` (network column),
    ``lon``/``lat`` (segment centres, WGS84), ``distance_m``, ``length_m``, ``eta_s``,
    ``duration_s``, ``provenance`` (of the chosen network's quality, :class:`Provenance` codes)
    and ``outage_risk`` (drop probability of the chosen network in the segment); ``unknown``
    is ``(segments, networks)``: True where the map had no data near the segment for the
    network and answered with its prior (None: all known).
    """

    network_ids: tuple[str, ...]
    assignment: IntArray
    lon: FloatArray
    lat: FloatArray
    distance_m: FloatArray
    length_m: FloatArray
    eta_s: FloatArray
    duration_s: FloatArray
    provenance: NDArray[np.int8]
    outage_risk: FloatArray
    handovers: tuple[Handover, ...]
    totals: PlanTotals
    solver: SolverReport
    app: str
    departure_s: float
    constraints: dict[str, Any] = field(default_factory=dict)
    # epoch of the orbital elements (Unix seconds) of every LEO constellation the plan considered
    element_epochs: dict[str, float] = field(default_factory=dict)
    unknown: NDArray[np.bool_] | None = None

    def __len__(self) -> int:
        return int(self.assignment.shape[0])

    @property
    def unknown_matrix(self) -> NDArray[np.bool_]:
        """``unknown`` as a ``(segments, networks)`` array (all False when not given).

        Examples
        --------
        >>> _empty_plan().unknown_matrix.shape
        (0, 1)
        """
        shape = (len(self), len(self.network_ids))
        if self.unknown is None:
            return np.zeros(shape, dtype=np.bool_)
        return np.asarray(self.unknown, dtype=np.bool_).reshape(shape)

    @property
    def segment_networks(self) -> list[str]:
        """Network id of every segment."""
        return [self.network_ids[i] for i in self.assignment.tolist()]

    def stretches(self) -> Iterator[tuple[int, int, str]]:
        """``(start, stop, network_id)`` of each run of segments on one network.

        Examples
        --------
        >>> list(_empty_plan().stretches())
        []
        """
        a = self.assignment
        if a.size == 0:
            return
        starts = np.concatenate([[0], np.flatnonzero(a[1:] != a[:-1]) + 1])
        stops = np.concatenate([starts[1:], [a.size]])
        for s, e in zip(starts.tolist(), stops.tolist(), strict=True):
            yield s, e, self.network_ids[int(a[s])]

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (NaN becomes null).

        Examples
        --------
        >>> _empty_plan().to_dict()["segments"]["network_id"]
        []
        """
        payload = {
            "format": _FORMAT,
            "app": self.app,
            "departure_s": self.departure_s,
            "network_ids": list(self.network_ids),
            "constraints": self.constraints,
            "element_epochs": {
                nid: format_time(epoch) for nid, epoch in sorted(self.element_epochs.items())
            },
            "solver": asdict(self.solver),
            "totals": asdict(self.totals),
            "handovers": [asdict(h) for h in self.handovers],
            "segments": {
                "network_id": self.segment_networks,
                "provenance": [Provenance(int(p)).name.lower() for p in self.provenance],
                "unknown": {
                    nid: self.unknown_matrix[:, j].tolist()
                    for j, nid in enumerate(self.network_ids)
                },
                "outage_risk": self.outage_risk.tolist(),
                "lon": self.lon.tolist(),
                "lat": self.lat.tolist(),
                "distance_m": self.distance_m.tolist(),
                "length_m": self.length_m.tolist(),
                "eta_s": self.eta_s.tolist(),
                "duration_s": self.duration_s.tolist(),
            },
        }
        return _json_safe(payload)

    def to_json(self, *, indent: int | None = None) -> str:
        """The plan as JSON text (:meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_geojson(self) -> dict[str, Any]:
        """GeoJSON FeatureCollection (EPSG:4326): one LineString per stretch on one network,
        one Point per handover; the whole plan (:meth:`to_dict`: totals, solver report and every
        segment) as a ``commap`` foreign member, so the file can be drawn again in full.

        Examples
        --------
        >>> _empty_plan().to_geojson()["features"]
        []
        """
        features = [self._stretch_feature(s, e, nid) for s, e, nid in self.stretches()]
        features += [_handover_feature(h) for h in self.handovers]
        return _json_safe(
            {"type": "FeatureCollection", "features": features, "commap": self.to_dict()}
        )

    def _boundary(self, i: int) -> list[float]:
        """Position of the boundary before segment ``i`` (midpoint of the two centres)."""
        return [
            float((self.lon[i - 1] + self.lon[i]) / 2.0),
            float((self.lat[i - 1] + self.lat[i]) / 2.0),
        ]

    def _stretch_feature(self, start: int, stop: int, network_id: str) -> dict[str, Any]:
        coords = [
            [float(x), float(y)]
            for x, y in zip(self.lon[start:stop], self.lat[start:stop], strict=True)
        ]
        if start > 0:
            coords.insert(0, self._boundary(start))
        if stop < len(self):
            coords.append(self._boundary(stop))
        if len(coords) < 2:
            coords.append(coords[0])  # a one-segment route: a degenerate but valid line
        end = stop - 1
        props = {
            "feature": "stretch",
            "network_id": network_id,
            "start_segment": start,
            "end_segment": end,
            "start_distance_m": float(self.distance_m[start]),
            "end_distance_m": float(self.distance_m[end] + self.length_m[end]),
            "start_eta_s": float(self.eta_s[start]),
            "end_eta_s": float(self.eta_s[end] + self.duration_s[end]),
            "length_m": float(self.length_m[start:stop].sum()),
            "duration_s": float(self.duration_s[start:stop].sum()),
            "expected_drops": float(self.outage_risk[start:stop].sum()),
            "max_outage_risk": float(self.outage_risk[start:stop].max()),
            "measured_share": float(
                (self.provenance[start:stop] == int(Provenance.MEASURED)).mean()
            ),
            "unknown_share": {
                nid: float(self.unknown_matrix[start:stop, j].mean())
                for j, nid in enumerate(self.network_ids)
            },
        }
        return {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": coords},
            "properties": props,
        }


def _handover_feature(h: Handover) -> dict[str, Any]:
    props = {"feature": "handover", **asdict(h)}
    props.pop("lat")
    props.pop("lon")
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [h.lon, h.lat]},
        "properties": props,
    }


def _json_safe(value: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones, recursively."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _empty_plan() -> Plan:
    """A plan of zero segments (doctest helper)."""
    z = np.zeros(0)
    totals = PlanTotals(0.0, 0.0, 0.0, 0.0, 0, {}, 0.0, 0.0, 0.0, 0.0, {}, 0.0, 0.0)
    return Plan(
        ("a",),
        np.zeros(0, np.int64),
        z,
        z,
        z,
        z,
        z,
        z,
        np.zeros(0, np.int8),
        z,
        (),
        totals,
        SolverReport("dp", "OPTIMAL", 0.0, 0.0, 0.0, 0.0),
        defaults.APP,
        0.0,
    )


# -- building plans -----------------------------------------------------------------------------
def make_plan(
    problem: HandoverProblem,
    assignment: IntArray,
    report: SolverReport,
    evaluation: Evaluation | None = None,
) -> Plan:
    """Wrap an assignment into a :class:`Plan`, scored by the independent evaluator.

    ``evaluation`` is the evaluator's score of this very assignment when the caller has it
    already (the evaluator is a pure function: scoring it again gives the same).

    Raises
    ------
    CommapError
        If the evaluator finds a broken constraint (a solver bug, never a user error).
    """
    ev = evaluation if evaluation is not None else evaluate_plan(problem, assignment)
    if ev.violations:
        raise CommapError(
            f"internal error: {report.name} produced a plan that breaks constraints: "
            + "; ".join(ev.violations)
        )
    a = np.asarray(assignment, dtype=np.int64)
    cor = problem.corridor
    rows = np.arange(a.size)
    return Plan(
        network_ids=problem.network_ids,
        assignment=a,
        lon=np.asarray(cor.lon, dtype=np.float64),
        lat=np.asarray(cor.lat, dtype=np.float64),
        distance_m=np.asarray(cor.distance_m, dtype=np.float64),
        length_m=np.asarray(cor.length_m, dtype=np.float64),
        eta_s=np.asarray(cor.eta_s, dtype=np.float64),
        duration_s=np.asarray(cor.duration_s, dtype=np.float64),
        provenance=problem.provenance[rows, a].astype(np.int8),
        outage_risk=problem.drop_prob[rows, a],
        handovers=_handovers(problem, a, ev),
        totals=_totals(problem, ev),
        solver=report,
        app=problem.app.name,
        departure_s=float(cor.departure_s),
        constraints=_constraints_dict(problem.constraints),
        unknown=problem.unknown,
    )


def _handovers(problem: HandoverProblem, a: IntArray, ev: Evaluation) -> tuple[Handover, ...]:
    cor, ids, table = problem.corridor, problem.network_ids, problem.switch
    gain = problem.link.target_outage_failure_gain
    out = []
    for i in ev.switch_at.tolist():
        m, n = int(a[i - 1]), int(a[i])
        out.append(
            Handover(
                segment=i,
                lat=float((cor.lat[i - 1] + cor.lat[i]) / 2.0),
                lon=float((cor.lon[i - 1] + cor.lon[i]) / 2.0),
                distance_m=float(cor.distance_m[i]),
                eta_s=float(cor.eta_s[i]),
                from_network=ids[m],
                to_network=ids[n],
                kind=table.kind(m, n).value,
                failure_prob=float(table.failure_prob[m, n] + gain * problem.point_outage[i, n]),
                interruption_s=float(table.interruption_s[m, n]),
                prepare_s=_prepare_s(problem, m, n),
            )
        )
    return tuple(out)


def _prepare_s(problem: HandoverProblem, m: int, n: int) -> float:
    """Lead time the vehicle set-up needs before the switch ``m -> n`` (see :class:`Handover`)."""
    vehicle = problem.vehicle
    if vehicle is None:
        return 0.0
    a, b = problem.networks[m], problem.networks[n]
    cold, prepared = vehicle.switch_s(a, b), vehicle.switch_s(a, b, standby=True)
    if prepared >= cold:
        return 0.0
    if b.is_satellite and not a.is_satellite:
        return vehicle.satellite_acquisition_s
    return vehicle.operator_switch_s


def _totals(problem: HandoverProblem, ev: Evaluation) -> PlanTotals:
    return PlanTotals(
        cost=ev.cost,
        expected_drops=ev.expected_drops,
        outage_drops=ev.outage_drops,
        handover_drops=ev.handover_drops,
        handovers=ev.handovers,
        handovers_by_kind=dict(ev.handovers_by_kind),
        outage_s=ev.outage_s,
        interruption_s=ev.interruption_s,
        sat_mb=ev.sat_mb,
        latency_violation_s=ev.latency_violation_s,
        time_share=dict(ev.time_share),
        length_m=problem.corridor.total_length_m if len(problem.corridor) else 0.0,
        duration_s=problem.corridor.total_duration_s if len(problem.corridor) else 0.0,
        expected_loss_s=ev.expected_loss_s,
        loss_events=ev.loss_events,
    )


def _constraints_dict(c: Constraints) -> dict[str, Any]:
    return {k: v for k, v in asdict(c).items() if v is not None}


def solve(
    problem: HandoverProblem,
    *,
    solver: str = defaults.SOLVER,
    time_limit_s: float = defaults.SOLVER_TIME_LIMIT_S,
    seed: int = defaults.SEED,
    num_workers: int | None = None,
    gap_limit: float = 1e-3,
) -> Plan:
    """Plan a prepared problem.

    The solver's plan of least expected cost then loses the stretches the map cannot vouch
    for (``Objective.switch_confidence_sd``, :mod:`commap.plan.confidence`); the report keeps
    the solver's status, objective, bound and gap (of its own plan) and says apart how many
    switches went and what that cost (:class:`SolverReport`).

    Parameters
    ----------
    problem : HandoverProblem
        Costs and constraints.
    solver : {"auto", "dp", "cpsat"}
        ``auto``: the exact DP without global constraints (handover limit, satellite budget),
        CP-SAT with them.
    time_limit_s, seed, num_workers, gap_limit
        CP-SAT settings (see :func:`commap.plan.cpsat.solve_cpsat`).

    Raises
    ------
    InvalidInputError
        Unknown solver, or ``dp`` with a global constraint.
    NoFeasiblePlanError
        The constraints cannot be met (``constraint`` says which).
    SolverTimeoutError
        CP-SAT found no plan within the time limit.
    """
    if solver not in SOLVERS:
        raise InvalidInputError(
            f"unknown solver {solver!r}; expected one of {', '.join(SOLVERS)}", field="solver"
        )
    start = time.perf_counter()
    if solver == "dp" or (solver == "auto" and not problem.constraints.is_global):
        assignment = solve_dp(problem).assignment[0]
        solved = evaluate_plan(problem, assignment)
        report = SolverReport(
            "dp",
            "OPTIMAL",
            solved.cost,
            solved.cost,
            0.0,
            time.perf_counter() - start,
            "exact Viterbi",
        )
        return _vouched(problem, assignment, report, solved)
    res = solve_cpsat(
        problem,
        time_limit_s=time_limit_s,
        seed=seed,
        num_workers=num_workers,
        gap_limit=gap_limit,
    )
    detail = f"plan from {res.source}; cp-sat {res.cp_status} over {res.units} units"
    report = SolverReport(
        "cp-sat", res.status, res.cost, res.bound, res.gap, time.perf_counter() - start, detail
    )
    log.info("plan %s: cost %.6g, bound %.6g, gap %.2e", res.status, res.cost, res.bound, res.gap)
    return _vouched(problem, res.assignment, report)


def _vouched(
    problem: HandoverProblem,
    assignment: IntArray,
    report: SolverReport,
    solved: Evaluation | None = None,
) -> Plan:
    """The solver's plan without the stretches the map cannot vouch for
    (:mod:`commap.plan.confidence`).

    The report keeps the solver's status, objective, bound and gap: they are true of the
    solver's plan, which the merge deliberately leaves; what the merge cost is reported
    beside them (:class:`SolverReport`). ``solved``: the solver's plan scored already.
    """
    kept = vouched_assignment(problem, assignment, problem.objective.switch_confidence_sd)
    dropped = int((assignment[1:] != assignment[:-1]).sum() - (kept[1:] != kept[:-1]).sum())
    if dropped == 0:
        return make_plan(problem, assignment, report, solved)
    solved = solved if solved is not None else evaluate_plan(problem, assignment)
    merged = evaluate_plan(problem, kept)
    loss_s = merged.expected_loss_s - solved.expected_loss_s
    report = replace(
        report,
        merged_switches=dropped,
        merge_cost=merged.cost - solved.cost,
        merge_loss_s=loss_s,
        merge_loss_share=loss_s / solved.expected_loss_s if solved.expected_loss_s > 0 else 0.0,
    )
    return make_plan(
        problem, kept, replace(report, detail=f"{report.detail}; {report.merge_summary}"), merged
    )


def plan_corridor(
    corridor: Corridor,
    matrix: QualityMatrix,
    catalogue: NetworkCatalogue,
    *,
    link: LinkModel | None = None,
    app: AppProfile | str = defaults.APP,
    objective: Objective | None = None,
    constraints: Constraints | None = None,
    solver: str = defaults.SOLVER,
    time_limit_s: float = defaults.SOLVER_TIME_LIMIT_S,
    seed: int = defaults.SEED,
    vehicle: VehicleSetup | None = None,
) -> Plan:
    """Build the problem for a corridor and plan it (:func:`solve`).

    Examples
    --------
    >>> plan_corridor.__name__
    'plan_corridor'
    """
    problem = HandoverProblem.build(
        corridor,
        matrix,
        catalogue,
        link=link,
        app=app,
        objective=objective,
        constraints=constraints,
        vehicle=vehicle,
    )
    return solve(problem, solver=solver, time_limit_s=time_limit_s, seed=seed)


# -- files --------------------------------------------------------------------------------------
def write_plan(plan: Plan, path: str | Path) -> Path:
    """Write ``plan`` to ``path``; the suffix picks the format (.json, .geojson, .gpkg).

    The file appears whole or not at all (written beside, then renamed).

    Raises
    ------
    InvalidInputError
        For another suffix.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".json", ".geojson", ".gpkg"):
        raise InvalidInputError(
            f"{target}: unknown plan format {suffix!r}; use .json, .geojson or .gpkg", field="out"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        write_text_atomic(target, plan.to_json(indent=1) + "\n")
    elif suffix == ".geojson":
        write_text_atomic(target, json.dumps(plan.to_geojson(), allow_nan=False) + "\n")
    else:
        with atomic_path(target, keep_suffix=True) as tmp:
            _write_gpkg(plan, tmp)
    return target


def _write_gpkg(plan: Plan, path: Path) -> None:
    """Layers ``stretches`` and ``handovers`` for GIS, and ``plan``: one row holding the whole
    plan as JSON (:meth:`Plan.to_dict`), so the file can be drawn again in full."""
    import geopandas as gpd
    import pandas as pd
    import pyogrio
    from shapely.geometry import shape

    collection = plan.to_geojson()
    for layer, kind, geom_type in (
        ("stretches", "stretch", "LineString"),
        ("handovers", "handover", "Point"),
    ):
        feats = [f for f in collection["features"] if f["properties"]["feature"] == kind]
        frame = gpd.GeoDataFrame(
            [{k: _gpkg_value(v) for k, v in f["properties"].items()} for f in feats],
            geometry=[shape(f["geometry"]) for f in feats],
            crs="EPSG:4326",
        )
        frame.to_file(path, layer=layer, driver="GPKG", engine="pyogrio", geometry_type=geom_type)
    table = pd.DataFrame({"format": [_FORMAT], "plan_json": [plan.to_json()]})
    pyogrio.write_dataframe(table, path, layer=_PLAN_TABLE, driver="GPKG")


def _gpkg_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


def read_plan_document(path: str | Path) -> dict[str, Any]:
    """The plan dictionary (:meth:`Plan.to_dict`) of any file :func:`write_plan` writes.

    JSON holds it whole, GeoJSON in its ``commap`` member, GeoPackage in its ``plan`` table.

    Raises
    ------
    InvalidInputError
        Unknown suffix, unreadable file, or a file without a commap plan (say how to write one).

    Examples
    --------
    >>> read_plan_document("missing.geojson")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: missing.geojson: cannot read plan (file does not exist)
    >>> read_plan_document("plan.csv")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: plan.csv: unknown plan format '.csv'; use .json, .geojson or .gpkg
    """
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix not in (".json", ".geojson", ".gpkg"):
        raise InvalidInputError(
            f"{source}: unknown plan format {suffix!r}; use .json, .geojson or .gpkg", field="plan"
        )
    if not source.is_file():
        raise InvalidInputError(f"{source}: cannot read plan (file does not exist)", field="plan")
    doc: Any = None
    try:
        if suffix == ".gpkg":
            import pyogrio

            if _PLAN_TABLE in pyogrio.list_layers(source)[:, 0]:
                table = pyogrio.read_dataframe(source, layer=_PLAN_TABLE, read_geometry=False)
                doc = json.loads(str(table["plan_json"].iloc[0]))
        else:
            doc = json.loads(source.read_text(encoding="utf-8"))
            if suffix == ".geojson" and isinstance(doc, dict):
                doc = doc.get("commap")
    except Exception as exc:  # JSON, OS and GDAL errors: the user needs the file and the reason
        raise InvalidInputError(f"{source}: cannot read plan ({exc})", field="plan") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT or "segments" not in doc:
        raise InvalidInputError(
            f"{source}: not a commap plan ({_FORMAT}); write one with "
            f"`commap plan ... --out plan{suffix}`",
            field="plan",
        )
    return doc
