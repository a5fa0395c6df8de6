"""Synthetic but realistic planning inputs for the planner tests.

Networks mirror the default map (maps/andorra/map.toml): a national operator with LTE and NR,
two roaming operators, Starlink and OneWeb (LEO) and one GEO satellite. Quality matrices are
run-structured (values constant over stretches of 2-26 segments, as along a road between cell
borders) with coverage gaps, tunnels (every terrestrial network and every satellite out), LEO
visibility that comes and goes, and a GEO link that is always there in the open but slow.
"""

from __future__ import annotations

import itertools

import numpy as np

from commap.geo.corridor import Corridor
from commap.networks import Network, NetworkCatalogue, NetworkKind
from commap.plan import Constraints
from commap.plan.evaluator import evaluate_plan
from commap.plan.problem import HandoverProblem
from commap.radio.link import LinkModel, Objective
from commap.radio.quality import (
    NO_SATELLITE_ELEVATION_DEG,
    NO_SIGNAL_RSRP_DBM,
    NO_SIGNAL_SINR_DB,
    Provenance,
    QualityMatrix,
)

T, LEO, GEO = NetworkKind.TERRESTRIAL, NetworkKind.LEO, NetworkKind.GEO

NETWORKS = (
    Network(id="ad-lte", kind=T, operator="ad", technology="lte", latency_ms=35.0),
    Network(id="ad-nr", kind=T, operator="ad", technology="nr", latency_ms=20.0),
    Network(
        id="es-lte", kind=T, operator="es", technology="lte", latency_ms=45.0, cost_per_mb=0.001
    ),
    Network(
        id="fr-lte", kind=T, operator="fr", technology="lte", latency_ms=45.0, cost_per_mb=0.001
    ),
    Network(
        id="starlink",
        kind=LEO,
        operator="starlink",
        technology="leo",
        latency_ms=45.0,
        cost_per_mb=0.002,
        min_elevation_deg=25.0,
    ),
    Network(
        id="oneweb",
        kind=LEO,
        operator="oneweb",
        technology="leo",
        latency_ms=70.0,
        cost_per_mb=0.003,
        min_elevation_deg=35.0,
    ),
    Network(
        id="geo",
        kind=GEO,
        operator="geo",
        technology="geo",
        latency_ms=600.0,
        cost_per_mb=0.01,
        min_elevation_deg=10.0,
    ),
)
# Switches priced as they were when a drop outweighed every second of interruption: the switch
# costs then satisfy the triangle inequality (run compression is exact) and plans switch often
# (the dwell rules bind). Tests of solver mechanics use it; the default objective prices a
# re-registration at its seconds, which a detour over a satellite can undercut.
CHEAP_SWITCHES = Objective(interruption_s=0.001)

CATALOGUE = NetworkCatalogue(NETWORKS)


def corridor(
    n_seg: int,
    *,
    segment_m: float = 50.0,
    speed_mps: float | np.ndarray = 25.0,
    tunnel: tuple[int, int] | None = None,
    lon0: float = 1.52,
    lat0: float = 42.50,
) -> Corridor:
    """A straight corridor of ``n_seg`` segments heading north-east from ``(lon0, lat0)``."""
    length = np.full(n_seg, segment_m)
    speed = np.broadcast_to(np.asarray(speed_mps, dtype=np.float64), (n_seg,)).copy()
    duration = length / speed
    distance = np.concatenate([[0.0], np.cumsum(length)[:-1]]) if n_seg else np.zeros(0)
    eta = np.concatenate([[0.0], np.cumsum(duration)[:-1]]) if n_seg else np.zeros(0)
    centre_m = distance + length / 2
    lat = lat0 + centre_m * 0.7071 / 111_320.0
    lon = lon0 + centre_m * 0.7071 / (111_320.0 * np.cos(np.radians(lat0)))
    in_tunnel = np.zeros(n_seg, dtype=bool)
    if tunnel is not None:
        in_tunnel[tunnel[0] : tunnel[1]] = True
    return Corridor(
        lon=lon,
        lat=lat,
        distance_m=distance,
        length_m=length,
        eta_s=eta,
        duration_s=duration,
        speed_mps=speed,
        in_tunnel=in_tunnel,
        on_bridge=np.zeros(n_seg, dtype=bool),
        under_bridge=np.zeros(n_seg, dtype=bool),
        departure_s=1_737_633_600.0,
    )


def _runs(rng: np.random.Generator, n_seg: int, lo: int = 2, hi: int = 26) -> np.ndarray:
    """Run id per segment, runs of ``lo..hi`` segments."""
    lengths = rng.integers(lo, hi + 1, size=n_seg // lo + 1)
    return np.repeat(np.arange(lengths.size), lengths)[:n_seg]


def matrix(
    cor: Corridor,
    rng: np.random.Generator,
    *,
    networks: tuple[Network, ...] = NETWORKS,
    gap_rate: float = 0.15,
    run_lo: int = 2,
    run_hi: int = 26,
    measured_share: float = 0.2,
    shared_runs: bool = False,
) -> QualityMatrix:
    """Run-structured quality of ``networks`` along ``cor``.

    Terrestrial SINR is drawn per run (some runs are coverage gaps); LEO elevation alternates
    between visible and below-mask stretches; GEO sits at 38 deg. In tunnels everything is out.
    With ``shared_runs`` every network changes at the same segments (long identical rows).
    """
    n_seg, n_net = len(cor), len(networks)
    sinr = np.empty((n_seg, n_net))
    rsrp = np.full((n_seg, n_net), np.nan)
    elev = np.full((n_seg, n_net), np.nan)
    conf = np.empty((n_seg, n_net))
    prov = np.full((n_seg, n_net), int(Provenance.MODELLED), dtype=np.int8)
    common = _runs(rng, n_seg, run_lo, run_hi)
    for j, net in enumerate(networks):
        run = common if shared_runs else _runs(rng, n_seg, run_lo, run_hi)
        k = int(run.max(initial=0)) + 1
        measured = rng.random(k) < measured_share
        conf[:, j] = np.where(measured, 0.9, 0.3)[run]
        prov[:, j] = np.where(measured, int(Provenance.MEASURED), int(Provenance.MODELLED))[run]
        if net.kind is T:
            gap = rng.random(k) < gap_rate
            s = np.where(gap, NO_SIGNAL_SINR_DB, np.round(rng.uniform(-8.0, 18.0, k), 1))
            sinr[:, j] = s[run]
            rsrp[:, j] = np.where(gap, NO_SIGNAL_RSRP_DBM, np.round(rng.uniform(-118, -80, k)))[run]
        else:
            if net.kind is LEO:
                seen = rng.random(k) < 0.7
                e = np.where(
                    seen, np.round(rng.uniform(40.0, 75.0, k)), np.round(rng.uniform(5, 20, k))
                )
            else:
                e = np.full(k, 38.0)
            elev[:, j] = e[run]
            sinr[:, j] = np.where(net.kind is GEO, 6.0, 9.0)
            conf[:, j] = 0.9
    tunnel = np.asarray(cor.in_tunnel)
    sat = np.array([n.is_satellite for n in networks])
    sinr[tunnel] = NO_SIGNAL_SINR_DB
    rsrp[np.ix_(tunnel, ~sat)] = NO_SIGNAL_RSRP_DBM
    elev[np.ix_(tunnel, sat)] = NO_SATELLITE_ELEVATION_DEG
    return QualityMatrix(
        network_ids=tuple(n.id for n in networks),
        rsrp_dbm=rsrp,
        sinr_db=sinr,
        elevation_deg=elev,
        confidence=conf,
        provenance=prov,
        sample_count=np.where(prov == int(Provenance.MEASURED), 20, 0).astype(np.int32),
    )


def random_networks(rng: np.random.Generator, n_net: int) -> tuple[Network, ...]:
    """``n_net`` distinct networks of the catalogue, in catalogue order."""
    pick = np.sort(rng.choice(len(NETWORKS), size=n_net, replace=False))
    return tuple(NETWORKS[i] for i in pick)


def random_instance(
    rng: np.random.Generator, n_seg: int, n_net: int
) -> tuple[Corridor, QualityMatrix]:
    """A small instance with runs of 1-3 segments and varying speed (for brute force)."""
    speed = rng.choice([8.0, 14.0, 25.0, 33.0], size=n_seg)
    cor = corridor(n_seg, speed_mps=speed)
    nets = random_networks(rng, n_net)
    return cor, matrix(cor, rng, networks=nets, gap_rate=0.3, run_lo=1, run_hi=3)


def brute_force(problem: HandoverProblem) -> tuple[float, tuple[int, ...]]:
    """Cheapest feasible assignment by enumeration (the evaluator scores and checks)."""
    n_seg, n_net = problem.shape
    best: tuple[float, tuple[int, ...]] = (np.inf, ())
    for a in itertools.product(range(n_net), repeat=n_seg):
        ev = evaluate_plan(problem, np.array(a))
        if ev.feasible and ev.cost < best[0] - 1e-12:
            best = (ev.cost, a)
    return best


APPS = ("telemetry", "teleoperation", "infotainment")


def random_problem(
    seed: int,
    *,
    dwell: bool,
    segments: tuple[int, int],
    longest_tunnel: int,
    tunnel_room: int,
    longest_run: int,
    vary_reregistration: bool = False,
) -> HandoverProblem:
    """A random route problem: speeds, an optional tunnel, gaps, dwell and an initial network.

    ``vary_reregistration`` draws a re-registration dearer than two satellite switches (which
    breaks the triangle inequality: single units) or a quick one (run compression).
    """
    rng = np.random.default_rng(seed)
    n_seg = int(rng.integers(*segments))
    speed = rng.choice([8.0, 14.0, 25.0, 33.0], size=n_seg)
    start = int(rng.integers(0, n_seg - tunnel_room))
    tunnel = (start, start + int(rng.integers(3, longest_tunnel))) if rng.random() < 0.5 else None
    cor = corridor(n_seg, speed_mps=speed, tunnel=tunnel)
    nets = random_networks(rng, int(rng.integers(2, len(NETWORKS) + 1)))
    m = matrix(
        cor,
        rng,
        networks=nets,
        gap_rate=float(rng.uniform(0.05, 0.4)),
        run_lo=1,
        run_hi=int(rng.integers(2, longest_run)),
        shared_runs=bool(rng.random() < 0.5),
    )
    cons = Constraints(
        min_dwell_s=float(rng.choice([3.0, 10.0, 25.0])) if dwell else 0.0,
        min_dwell_m=float(rng.choice([0.0, 150.0])) if dwell else 0.0,
        initial_network=nets[0].id if rng.random() < 0.3 else None,
    )
    link = (
        LinkModel(reregistration_s=float(rng.choice([0.3, 10.0]))) if vary_reregistration else None
    )
    app = str(rng.choice(APPS))
    if link is None:
        return HandoverProblem.build(cor, m, CATALOGUE, app=app, constraints=cons)
    return HandoverProblem.build(cor, m, CATALOGUE, app=app, constraints=cons, link=link)
