"""Planner benchmarks: plain DP and constrained plans on a 1,000 km synthetic corridor.

A 1,000 km corridor cut into 20,000 segments of 50 m with 8 networks (four terrestrial
operators' layers, Starlink, OneWeb, GEO and a second NR layer), run-structured like a real road:
quality changes at shared borders every 2-26 segments, with coverage gaps, two tunnels (every
network out), LEO visibility that comes and goes and a slow GEO link. Figures are medians over
repeats.

* ``dp_*``: the exact DP without global constraints, plain and with a 10 s minimum dwell
  (targets 4.5 ms / 20 ms); ``*_over_numpy_pass`` divides by an in-run baseline, one numpy
  pass over the same (segments x networks) array; ``*_cpu_s`` is the process CPU time, which a
  busy machine's time slicing does not inflate as it does the wall time. ``dp_engine``: the
  compiled DP (numba) or the numpy passes; ``dp_kernels_load_s``: what loading the compiled
  kernels cost this process before the first figure (the server pays it at start).
* ``constrained_*``: minimum dwell 10 s, satellite budget and handover limit both at 80 % of what
  the unconstrained dwell plan uses; time and gap to the proven lower bound (target < 0.5 s
  within 0.1 % on 2 cores).
* ``long_route_*``: the library side of a 1,019 km PlanRoute on the default map (the valleys
  driven forth and back as one polyline, as the server benchmark sends it): corridor, quality
  matrix and plan, each timed (target < 0.5 s in all); ``long_route_quality_cold_s`` is the
  first quality matrix of the loaded map, before its satellite layers keep any node interval.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from commap.geo.corridor import Corridor
from commap.networks import Network, NetworkCatalogue, NetworkKind
from commap.plan import Constraints, HandoverProblem, evaluate_plan, solve_cpsat, solve_dp
from commap.radio.quality import (
    NO_SATELLITE_ELEVATION_DEG,
    NO_SIGNAL_RSRP_DBM,
    NO_SIGNAL_SINR_DB,
    Provenance,
    QualityMatrix,
)

__all__ = ["run", "synthetic_corridor"]

R = TypeVar("R")
T, LEO, GEO = NetworkKind.TERRESTRIAL, NetworkKind.LEO, NetworkKind.GEO
NETWORKS = (
    Network(id="ad-lte", kind=T, operator="ad", technology="lte", latency_ms=35.0),
    Network(id="ad-nr", kind=T, operator="ad", technology="nr", latency_ms=20.0),
    Network(id="es-lte", kind=T, operator="es", technology="lte", latency_ms=45.0),
    Network(id="es-nr", kind=T, operator="es", technology="nr", latency_ms=25.0),
    Network(id="fr-lte", kind=T, operator="fr", technology="lte", latency_ms=45.0),
    Network(
        id="starlink",
        kind=LEO,
        operator="starlink",
        technology="leo",
        latency_ms=45.0,
        min_elevation_deg=25.0,
    ),
    Network(
        id="oneweb",
        kind=LEO,
        operator="oneweb",
        technology="leo",
        latency_ms=70.0,
        min_elevation_deg=35.0,
    ),
    Network(
        id="geo",
        kind=GEO,
        operator="geo",
        technology="geo",
        latency_ms=600.0,
        min_elevation_deg=10.0,
    ),
)


def synthetic_corridor(
    n_seg: int = 20_000, seed: int = 0
) -> tuple[Corridor, QualityMatrix, NetworkCatalogue]:
    """The benchmark corridor, its quality matrix and catalogue (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    length = np.full(n_seg, 50.0)
    run = np.repeat(np.arange(n_seg), rng.integers(2, 27, size=n_seg))[:n_seg]
    k = int(run[-1]) + 1
    speed = rng.choice([14.0, 22.0, 25.0, 33.0], size=k)[run]  # one speed per road stretch
    duration = length / speed
    distance = np.concatenate([[0.0], np.cumsum(length)[:-1]])
    eta = np.concatenate([[0.0], np.cumsum(duration)[:-1]])
    tunnel = np.zeros(n_seg, dtype=bool)
    tunnel[5_000:5_040] = True
    tunnel[14_000:14_012] = True
    centre = distance + 25.0
    cor = Corridor(
        lon=1.0 + centre / 80_000.0,
        lat=42.0 + centre / 111_320.0,
        distance_m=distance,
        length_m=length,
        eta_s=eta,
        duration_s=duration,
        speed_mps=speed,
        in_tunnel=tunnel,
        on_bridge=np.zeros(n_seg, dtype=bool),
        under_bridge=np.zeros(n_seg, dtype=bool),
        departure_s=1_737_633_600.0,
    )
    return cor, _matrix(rng, run, k, tunnel), NetworkCatalogue(NETWORKS)


def _matrix(rng: np.random.Generator, run: np.ndarray, k: int, tunnel: np.ndarray) -> QualityMatrix:
    n_seg, n_net = run.size, len(NETWORKS)
    shape = (n_seg, n_net)
    sinr, rsrp, elev = np.empty(shape), np.full(shape, np.nan), np.full(shape, np.nan)
    conf, prov = np.empty(shape), np.full(shape, int(Provenance.MODELLED), dtype=np.int8)
    for j, net in enumerate(NETWORKS):
        measured = rng.random(k) < 0.2
        conf[:, j] = np.where(measured, 0.9, 0.3)[run]
        prov[:, j] = np.where(measured, int(Provenance.MEASURED), int(Provenance.MODELLED))[run]
        if net.kind is T:
            gap = rng.random(k) < 0.15
            sinr[:, j] = np.where(gap, NO_SIGNAL_SINR_DB, np.round(rng.uniform(-8, 18, k), 1))[run]
            rsrp[:, j] = np.where(gap, NO_SIGNAL_RSRP_DBM, np.round(rng.uniform(-118, -80, k)))[run]
        else:
            seen = rng.random(k) < (0.7 if net.kind is LEO else 1.0)
            e = np.where(seen, np.round(rng.uniform(40, 75, k)), np.round(rng.uniform(5, 20, k)))
            elev[:, j] = (e if net.kind is LEO else np.full(k, 38.0))[run]
            sinr[:, j] = 6.0 if net.kind is GEO else 9.0
            conf[:, j] = 0.9
    sat = np.array([n.is_satellite for n in NETWORKS])
    sinr[tunnel] = NO_SIGNAL_SINR_DB
    rsrp[np.ix_(tunnel, ~sat)] = NO_SIGNAL_RSRP_DBM
    elev[np.ix_(tunnel, sat)] = NO_SATELLITE_ELEVATION_DEG
    return QualityMatrix(
        network_ids=tuple(n.id for n in NETWORKS),
        rsrp_dbm=rsrp,
        sinr_db=sinr,
        elevation_deg=elev,
        confidence=conf,
        provenance=prov,
        sample_count=np.where(prov == int(Provenance.MEASURED), 20, 0).astype(np.int32),
    )


def _median_time(fn: Callable[[], R], repeats: int) -> tuple[float, R]:
    return _median_times(fn, repeats)[::2]  # type: ignore[return-value]


def _median_times(fn: Callable[[], R], repeats: int) -> tuple[float, float, R]:
    """Median wall time, median process CPU time (robust to a busy machine's time slicing;
    one thread here), and the last result."""
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(times), statistics.median(cpu), result


def _long_route_figures() -> dict[str, float | str]:
    """Corridor, quality matrix and plan of the server benchmark's 1,019 km polyline."""
    from bench.bench_server import T0, _built_map, _long_polyline
    from commap.geo.corridor import route_from_polyline
    from commap.map.comm_map import CommMap
    from commap.plan import plan_corridor
    from commap.service.planning import PlanRequest, plan_route

    cmap = CommMap.load(_built_map())
    lon, lat = _long_polyline(cmap.directory)
    route = route_from_polyline(lon, lat, name="polyline")
    request = PlanRequest(route=route, departure_s=float(T0))  # the server's defaults
    corridor_s, corridor = _median_time(lambda: cmap.corridor(route, departure_s=T0), 3)
    start = time.perf_counter()
    cmap.quality(corridor)  # a freshly loaded map: every satellite node interval computed
    quality_cold_s = time.perf_counter() - start
    quality_s, matrix = _median_time(lambda: cmap.quality(corridor), 3)
    plan_s, plan = _median_time(
        lambda: plan_corridor(
            corridor,
            matrix,
            cmap.catalogue,
            app=request.app,
            objective=request.objective(),
            constraints=request.constraints(),
            time_limit_s=request.time_limit_s,
        ),
        3,
    )
    total_s, _ = _median_time(lambda: plan_route(cmap, request), 3)
    return {
        "long_route_km": round(corridor.total_length_m / 1000, 1),
        "long_route_segments": float(len(corridor)),
        "long_route_corridor_s": round(corridor_s, 3),
        "long_route_quality_cold_s": round(quality_cold_s, 3),
        "long_route_quality_s": round(quality_s, 3),
        "long_route_plan_s": round(plan_s, 3),
        "long_route_plan_route_s": round(total_s, 3),
        "long_route_handovers": float(plan.totals.handovers),
    }


def run() -> dict[str, float | str]:
    """Measure the planner; figures are medians over repeats."""
    from commap.plan import kernels

    # as the server does at start: the DP figures are those of a warm process
    load_s = kernels.warm_up()
    cor, matrix, catalogue = synthetic_corridor()
    app = "infotainment"
    build_s, base = _median_time(lambda: HandoverProblem.build(cor, matrix, catalogue, app=app), 5)
    scratch = np.empty_like(base.node_cost)
    pass_s, _ = _median_time(lambda: np.add(base.node_cost, base.entry_cost, out=scratch), 51)
    dp_s, dp_cpu_s, dp = _median_times(lambda: solve_dp(base), 21)
    dwell = HandoverProblem.build(
        cor, matrix, catalogue, app=app, constraints=Constraints(min_dwell_s=10.0)
    )
    dwell_s, dwell_cpu_s, dwell_plan = _median_times(lambda: solve_dp(dwell), 7)
    ref = evaluate_plan(dwell, dwell_plan.assignment[0])
    cons = Constraints(
        min_dwell_s=10.0,
        max_handovers=int(0.8 * ref.handovers),
        sat_budget_mb=round(0.8 * ref.sat_mb, 1),
    )
    problem = HandoverProblem.build(cor, matrix, catalogue, app=app, constraints=cons)
    cp_s, res = _median_time(
        lambda: solve_cpsat(problem, time_limit_s=10.0, seed=0, num_workers=2, gap_limit=1e-3), 3
    )
    final = evaluate_plan(problem, res.assignment)
    return {
        "segments": float(len(cor)),
        "networks": float(len(catalogue)),
        "cpus": float(os.cpu_count() or 1),
        "problem_build_s": round(build_s, 4),
        "numpy_pass_s": round(pass_s, 6),
        "dp_engine": "compiled" if kernels.COMPILED else "numpy",
        "dp_kernels_load_s": round(load_s, 3),
        "dp_plain_s": round(dp_s, 4),
        "dp_plain_cpu_s": round(dp_cpu_s, 4),
        "dp_plain_over_numpy_pass": round(dp_s / pass_s, 1),
        "dp_plain_handovers": float(evaluate_plan(base, dp.assignment[0]).handovers),
        "dp_plain_cost": round(evaluate_plan(base, dp.assignment[0]).cost, 9),
        "dp_dwell10s_s": round(dwell_s, 4),
        "dp_dwell10s_cpu_s": round(dwell_cpu_s, 4),
        "dp_dwell10s_over_numpy_pass": round(dwell_s / pass_s, 1),
        "dp_dwell10s_cost": round(evaluate_plan(dwell, dwell_plan.assignment[0]).cost, 9),
        "constrained_max_handovers": float(cons.max_handovers or 0),
        "constrained_sat_budget_mb": float(cons.sat_budget_mb or 0.0),
        "constrained_s": round(cp_s, 3),
        "constrained_status": res.status,
        "constrained_gap": float(f"{res.gap:.3g}"),
        "constrained_cost": round(res.cost, 4),
        "constrained_bound": round(res.bound, 4),
        "constrained_plan_from": f"{res.source} (cp-sat {res.cp_status})",
        "constrained_feasible": str(final.feasible),
        **_long_route_figures(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
