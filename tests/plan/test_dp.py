"""Exact DP: brute force agreement, run compression, dwell, gap placement, determinism."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from commap.errors import InvalidInputError
from commap.plan import (
    Constraints,
    HandoverProblem,
    compress,
    evaluate_plan,
    plan_corridor,
    solve_dp,
)
from commap.plan.dp import Weights, single_units, viterbi, viterbi_dwell, viterbi_limited
from commap.radio.link import LinkModel
from commap.radio.quality import NO_SATELLITE_ELEVATION_DEG, NO_SIGNAL_RSRP_DBM, NO_SIGNAL_SINR_DB
from tests.support import plan_synthetic as syn

APPS = ("telemetry", "teleoperation", "infotainment")


def _random_problem(seed: int, *, dwell: bool, link: LinkModel | None = None) -> HandoverProblem:
    rng = np.random.default_rng(seed)
    n_seg, n_net = int(rng.integers(1, 7)), int(rng.integers(1, 4))
    cor, m = syn.random_instance(rng, n_seg, n_net)
    cons = Constraints(min_dwell_s=float(rng.choice([0.0, 3.0, 8.0])) if dwell else 0.0)
    return HandoverProblem.build(
        cor, m, syn.CATALOGUE, app=str(rng.choice(APPS)), constraints=cons, link=link
    )


@pytest.mark.parametrize("seed", range(120))
def test_dp_equals_brute_force(seed: int) -> None:
    p = _random_problem(seed, dwell=False)
    result = solve_dp(p)
    cost, _ = syn.brute_force(p)
    ev = evaluate_plan(p, result.assignment[0])
    assert ev.feasible
    assert ev.cost == pytest.approx(cost, abs=1e-9)
    assert result.value[0] == pytest.approx(ev.cost, abs=1e-9)  # DP value = evaluator score


@pytest.mark.parametrize("seed", range(1000, 1120))
def test_dwell_dp_equals_brute_force(seed: int) -> None:
    p = _random_problem(seed, dwell=True)
    result = solve_dp(p)
    cost, _ = syn.brute_force(p)
    ev = evaluate_plan(p, result.assignment[0])
    assert ev.feasible, ev.violations
    assert ev.cost == pytest.approx(cost, abs=1e-9)


def test_dp_without_triangle_inequality_equals_brute_force() -> None:
    # a 60 s re-registration makes "operator A -> satellite -> operator B" cheaper than A -> B
    link = LinkModel(reregistration_s=3600.0)
    seen_broken = 0
    for seed in range(40):
        p = _random_problem(2000 + seed, dwell=False, link=link)
        seen_broken += not p.triangle_ok
        assert evaluate_plan(p, solve_dp(p).assignment[0]).cost == pytest.approx(
            syn.brute_force(p)[0]
        )
    assert seen_broken > 0
    assert len(compress(p)) == p.shape[0] or p.triangle_ok


def test_broken_triangle_inequality_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    """A server plans on one map all day: the notice must not come with every plan."""
    link = LinkModel(reregistration_s=3600.0)
    problems = (_random_problem(2000 + seed, dwell=False, link=link) for seed in range(40))
    broken = next(p for p in problems if not p.triangle_ok)
    with caplog.at_level("DEBUG", logger="commap.plan.problem"):
        for _ in range(3):  # three plans on the same networks
            assert len(compress(broken)) == broken.shape[0]
    notices = [r for r in caplog.records if "triangle inequality" in r.getMessage()]
    assert len(notices) == 3  # every plan still says it at DEBUG
    assert sum(r.levelname == "INFO" for r in notices) <= 1


@pytest.mark.parametrize("seed", range(12))
def test_run_compression_is_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cor = syn.corridor(int(rng.integers(50, 400)))
    m = syn.matrix(cor, rng, shared_runs=True, run_lo=1, run_hi=int(rng.integers(3, 20)))
    p = HandoverProblem.build(
        cor, m, syn.CATALOGUE, app=str(rng.choice(APPS)), objective=syn.CHEAP_SWITCHES
    )
    merged, single = compress(p), single_units(p)
    assert p.triangle_ok and len(merged) < len(single)
    weights = Weights.of(1.0, rng.uniform(0, 1e-2, 3), rng.uniform(0, 0.2, 3))
    for units in (merged, compress(p, max_run=3)):
        fast = viterbi(units, p.switch_cost, weights)
        slow = viterbi(single, p.switch_cost, weights)
        assert np.allclose(fast.value, slow.value, atol=1e-9)
    # the dwell DP with no dwell is the plain DP
    assert np.allclose(
        viterbi_dwell(single, p.switch_cost, 0.0, 0.0, weights).value,
        viterbi(single, p.switch_cost, weights).value,
    )


def test_batched_weights_equal_single_runs() -> None:
    rng = np.random.default_rng(7)
    cor = syn.corridor(300)
    p = HandoverProblem.build(cor, syn.matrix(cor, rng), syn.CATALOGUE, app="infotainment")
    units = single_units(p)
    lam_mb, lam_ho = np.array([0.0, 1e-3, 5e-3]), np.array([0.0, 0.05, 0.3])
    batch = viterbi_dwell(units, p.switch_cost, 10.0, 0.0, Weights.of(1.0, lam_mb, lam_ho))
    for k in range(3):
        one = viterbi_dwell(units, p.switch_cost, 10.0, 0.0, Weights.of(1.0, lam_mb[k], lam_ho[k]))
        assert batch.value[k] == pytest.approx(one.value[0])
        assert (batch.assignment[k] == one.assignment[0]).all()


@pytest.mark.parametrize(("dwell_s", "dwell_m"), [(10.0, 0.0), (0.0, 400.0), (20.0, 300.0)])
def test_no_handover_closer_than_min_dwell(dwell_s: float, dwell_m: float) -> None:
    rng = np.random.default_rng(11)
    cor = syn.corridor(2000, speed_mps=rng.choice([14.0, 25.0, 33.0], size=2000))
    m = syn.matrix(cor, rng, run_lo=1, run_hi=6)
    cheap = syn.CHEAP_SWITCHES  # switches cheap enough that the free plan ping-pongs
    free = HandoverProblem.build(cor, m, syn.CATALOGUE, objective=cheap)
    p = HandoverProblem.build(
        cor,
        m,
        syn.CATALOGUE,
        objective=cheap,
        constraints=Constraints(min_dwell_s=dwell_s, min_dwell_m=dwell_m),
    )
    a = solve_dp(p).assignment[0]
    # direct recount: consecutive switches are far enough apart unless the network had to go
    switches = np.flatnonzero(a[1:] != a[:-1]) + 1
    for i, j in itertools.pairwise(switches.tolist()):
        too_soon = (
            cor.eta_s[j] - cor.eta_s[i] < dwell_s - 1e-9
            or cor.distance_m[j] - cor.distance_m[i] < dwell_m - 1e-9
        )
        if too_soon:
            assert not p.allowed[j, a[i]], f"voluntary switch {j} only {j - i} segments after {i}"
    assert evaluate_plan(p, a).feasible
    # the dwell really binds on this route: the free plan ping-pongs more
    assert evaluate_plan(free, solve_dp(free).assignment[0]).handovers > switches.size


GAP = slice(40, 70)


def _gap_matrix(cor: syn.Corridor) -> syn.QualityMatrix:
    """Good terrestrial coverage except over ``GAP``, where every terrestrial network is out;
    satellites in view all along."""
    m = syn.matrix(cor, np.random.default_rng(5), gap_rate=0.0)
    sat = np.array([n.is_satellite for n in syn.NETWORKS])
    m.sinr_db[:, ~sat] = np.maximum(m.sinr_db[:, ~sat], 8.0)
    m.sinr_db[GAP, ~sat] = NO_SIGNAL_SINR_DB
    m.rsrp_dbm[GAP, ~sat] = NO_SIGNAL_RSRP_DBM
    m.elevation_deg[:, sat] = 60.0
    return m


@pytest.mark.parametrize("dwell_s", [0.0, 10.0])
def test_switches_before_a_coverage_gap_not_after(dwell_s: float) -> None:
    cor = syn.corridor(120)
    plan = plan_corridor(
        cor, _gap_matrix(cor), syn.CATALOGUE, constraints=Constraints(min_dwell_s=dwell_s)
    )
    sat = {n.id for n in syn.NETWORKS if n.is_satellite}
    on = plan.segment_networks
    assert all(on[i] in sat for i in range(GAP.start, GAP.stop))  # covered through the gap
    into = [h for h in plan.handovers if h.to_network in sat]
    assert into and into[0].segment <= GAP.start  # handed over at or before the gap starts
    assert into[0].distance_m <= cor.distance_m[GAP.start]
    # the drop risk of entering the gap was never taken on a terrestrial network
    assert plan.outage_risk[GAP].max() < 0.1


def test_tunnel_where_everything_is_out_causes_no_useless_switches() -> None:
    rng = np.random.default_rng(9)
    cor = syn.corridor(200, tunnel=(80, 110))
    m = syn.matrix(cor, rng)
    p = HandoverProblem.build(cor, m, syn.CATALOGUE)
    a = solve_dp(p).assignment[0]
    assert (p.point_outage[80:110] == 1.0).all()
    assert (a[80:110] == a[80]).all()  # nothing to gain by switching inside the tunnel
    sat_cols = [i for i, n in enumerate(syn.NETWORKS) if n.is_satellite]
    assert (m.elevation_deg[80:110, sat_cols] == NO_SATELLITE_ELEVATION_DEG).all()


def test_strict_latency_keeps_teleoperation_off_geo() -> None:
    rng = np.random.default_rng(2)
    cor = syn.corridor(400)
    m = syn.matrix(cor, rng, gap_rate=0.4)
    plan = plan_corridor(
        cor, m, syn.CATALOGUE, app="teleoperation", constraints=Constraints(strict_latency=True)
    )
    assert "geo" not in set(plan.segment_networks)
    assert plan.totals.latency_violation_s == 0.0


def test_same_input_same_plan() -> None:
    rng = np.random.default_rng(3)
    cor = syn.corridor(3000)
    m = syn.matrix(cor, rng)
    first = solve_dp(HandoverProblem.build(cor, m, syn.CATALOGUE)).assignment
    second = solve_dp(HandoverProblem.build(cor, m, syn.CATALOGUE)).assignment
    assert (first == second).all()


def test_degenerate_inputs() -> None:
    rng = np.random.default_rng(1)
    empty = syn.corridor(0)
    p = HandoverProblem.build(empty, syn.matrix(empty, rng), syn.CATALOGUE)
    assert solve_dp(p).assignment.shape == (1, 0)
    one_net = syn.NETWORKS[:1]
    cor = syn.corridor(30)
    q = HandoverProblem.build(cor, syn.matrix(cor, rng, networks=one_net), syn.CATALOGUE)
    assert (solve_dp(q).assignment == 0).all()


def test_dp_refuses_global_constraints() -> None:
    cor = syn.corridor(5)
    p = HandoverProblem.build(
        cor,
        syn.matrix(cor, np.random.default_rng(0)),
        syn.CATALOGUE,
        constraints=Constraints(max_handovers=1),
    )
    with pytest.raises(InvalidInputError, match="cpsat"):
        solve_dp(p)


def test_initial_network_is_kept_at_the_start() -> None:
    rng = np.random.default_rng(8)
    cor = syn.corridor(50)
    m = syn.matrix(cor, rng)
    p = HandoverProblem.build(cor, m, syn.CATALOGUE, constraints=Constraints(initial_network="geo"))
    a = solve_dp(p).assignment[0]
    assert p.network_ids[a[0]] == "geo"
    with pytest.raises(InvalidInputError):
        HandoverProblem.build(
            cor, m, syn.CATALOGUE, constraints=Constraints(initial_network="nope")
        )


def _switches_near_the_end(problem: HandoverProblem, assignment: np.ndarray) -> list[float]:
    """Seconds from each unforced switch to the arrival, for switches closer than the dwell."""
    cor, a = problem.corridor, np.asarray(assignment)
    end_s = float(cor.eta_s[-1] + cor.duration_s[-1])
    late = []
    for i in np.flatnonzero(a[1:] != a[:-1]) + 1:
        forced = not problem.allowed[i, a[i - 1]]
        leaves = not problem.allowed[i:, a[i]].all()
        if end_s - cor.eta_s[i] < problem.constraints.min_dwell_s - 1e-9 and not (forced or leaves):
            late.append(end_s - float(cor.eta_s[i]))
    return late


@pytest.mark.parametrize("seed", range(4000, 4080))
def test_dwell_holds_before_arrival(seed: int) -> None:
    # short routes (1.5-6 s segments) with an 8 s dwell: the arrival binds often
    rng = np.random.default_rng(seed)
    cor, m = syn.random_instance(rng, int(rng.integers(2, 7)), int(rng.integers(2, 4)))
    p = HandoverProblem.build(cor, m, syn.CATALOGUE, constraints=Constraints(min_dwell_s=8.0))
    cost, best = syn.brute_force(p)
    dp = solve_dp(p).assignment[0]
    ev = evaluate_plan(p, dp)
    assert ev.feasible, ev.violations
    assert ev.cost == pytest.approx(cost, abs=1e-9)
    assert _switches_near_the_end(p, dp) == []
    assert _switches_near_the_end(p, np.array(best)) == []


def test_the_arrival_binds_on_some_of_these_routes() -> None:
    # without the rule at the end (units without an arrival) the DP switches late on some
    late = 0
    for seed in range(4000, 4080):
        rng = np.random.default_rng(seed)
        cor, m = syn.random_instance(rng, int(rng.integers(2, 7)), int(rng.integers(2, 4)))
        p = HandoverProblem.build(
            cor,
            m,
            syn.CATALOGUE,
            objective=syn.CHEAP_SWITCHES,
            constraints=Constraints(min_dwell_s=8.0),
        )
        units = dataclasses.replace(single_units(p), end_s=np.inf, end_m=np.inf)
        loose = viterbi_dwell(units, p.switch_cost, 8.0, 0.0).assignment[0]
        if _switches_near_the_end(p, loose):
            late += 1
            assert not evaluate_plan(p, loose).feasible
    assert late >= 5


@pytest.mark.parametrize("seed", range(3000, 3080))
def test_handover_limit_dp_equals_brute_force(seed: int) -> None:
    # a limit one or two below what the free plan uses, with and without dwell, on routes
    # where the switch costs may break the triangle inequality (no run compression then)
    rng = np.random.default_rng(seed)
    n_seg, n_net = int(rng.integers(2, 7)), int(rng.integers(2, 4))
    cor, m = syn.random_instance(rng, n_seg, n_net)
    dwell = float(rng.choice([0.0, 3.0, 8.0]))
    free = HandoverProblem.build(
        cor, m, syn.CATALOGUE, app="infotainment", constraints=Constraints(min_dwell_s=dwell)
    )
    used = evaluate_plan(free, solve_dp(free).assignment[0]).handovers
    limit = max(used - int(rng.integers(1, 3)), 0)
    p = dataclasses.replace(free, constraints=Constraints(min_dwell_s=dwell, max_handovers=limit))
    cost, _ = syn.brute_force(p)
    units = single_units(p) if dwell else compress(p)
    result = viterbi_limited(units, p.switch_cost, limit, dwell, 0.0)
    if not np.isfinite(cost):
        assert not np.isfinite(result.value[0])
        return
    ev = evaluate_plan(p, result.assignment[0])
    assert ev.feasible, ev.violations
    assert ev.handovers <= limit
    assert ev.cost == pytest.approx(cost, abs=1e-9)
    assert result.value[0] == pytest.approx(ev.cost, abs=1e-9)
