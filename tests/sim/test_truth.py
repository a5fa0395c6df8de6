"""Truth field: seeded, with the requested shadowing sigma and correlation, and map errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from commap.errors import InvalidInputError
from commap.geo.corridor import Corridor, cut, route_from_polyline
from commap.networks import Network, NetworkKind
from commap.radio.quality import QIN_SINR_DB, Provenance, Quality, QualityMatrix
from commap.sim.truth import TruthConfig, correlated_shadowing_db, make_truth, step_grid

NETS = (
    Network(
        id="a-lte", kind=NetworkKind.TERRESTRIAL, operator="a", technology="lte", latency_ms=30
    ),
    Network(id="a-nr", kind=NetworkKind.TERRESTRIAL, operator="a", technology="nr", latency_ms=20),
    Network(
        id="b-lte", kind=NetworkKind.TERRESTRIAL, operator="b", technology="lte", latency_ms=40
    ),
    Network(
        id="sat",
        kind=NetworkKind.LEO,
        operator="s",
        technology="leo",
        latency_ms=40,
        min_elevation_deg=25.0,
    ),
)
QUIET = TruthConfig(
    over_report_db=0.0,
    bias_sigma_db=0.0,
    missing_site_per_km=0.0,
    phantom_site_per_km=0.0,
    sat_obstruction_per_km=0.0,
    sat_sigma_db=0.0,
    fast_fading_db=0.0,
    sat_fast_fading_db=0.0,
)


def corridor(length_deg: float = 0.3) -> Corridor:
    """A straight route east at 20 m/s (about 24.6 km for 0.3 deg at 42.5 N)."""
    return cut(
        route_from_polyline([1.5, 1.5 + length_deg], [42.5, 42.5], speed_mps=20.0), departure_s=0.0
    )


def flat_map(c: Corridor, sinr_db: float = 10.0) -> QualityMatrix:
    cols = []
    for net in NETS:
        q = Quality.empty(len(c), satellite=net.is_satellite)
        q.sinr_db[:] = sinr_db
        if net.is_satellite:
            q.elevation_deg[:] = 60.0
        else:
            q.rsrp_dbm[:] = -90.0
        cols.append(q)
    return QualityMatrix.from_columns(tuple(n.id for n in NETS), cols)


def test_same_seed_same_field_other_seed_other_field() -> None:
    c = corridor(0.05)
    m = flat_map(c)
    one = make_truth(c, m, NETS, seed=(7, 0))
    again = make_truth(c, m, NETS, seed=(7, 0))
    other = make_truth(c, m, NETS, seed=(8, 0))
    for name in ("sinr_db", "rsrp_dbm", "fading_db"):
        assert np.array_equal(getattr(one, name), getattr(again, name), equal_nan=True)
    assert not np.allclose(one.sinr_db, other.sinr_db)
    # an option of one error source leaves the other draws alone
    more = make_truth(c, m, NETS, seed=(7, 0), config=TruthConfig(phantom_site_per_km=0.0))
    assert np.array_equal(one.fading_db, more.fading_db)


def test_shadowing_has_the_requested_sigma_and_correlation() -> None:
    rng = np.random.default_rng(1)
    d = np.arange(0.0, 400_000.0, 5.0)
    x = correlated_shadowing_db(d, sigma_db=6.0, decorrelation_m=50.0, rng=rng)[:, 0]
    assert x.std() == pytest.approx(6.0, rel=0.05)
    for lag_m in (25.0, 50.0, 150.0):
        k = int(lag_m / 5.0)
        rho = np.corrcoef(x[:-k], x[k:])[0, 1]
        assert rho == pytest.approx(np.exp(-lag_m / 50.0), abs=0.04)


def test_truth_offsets_follow_sigma_and_operator_correlation() -> None:
    c = corridor(0.6)  # about 49 km
    m = flat_map(c)
    for sigma in (3.0, 6.0):
        truth = make_truth(c, m, NETS, seed=3, config=replace(QUIET, sigma_db=sigma))
        err = truth.sinr_db[:, :3] - 10.0
        assert err.std(axis=0) == pytest.approx(np.full(3, sigma), rel=0.12)
    truth = make_truth(c, m, NETS, seed=3, config=QUIET)
    err = truth.sinr_db - 10.0
    same_operator = np.corrcoef(err[:, 0], err[:, 1])[0, 1]
    other_operator = np.corrcoef(err[:, 0], err[:, 2])[0, 1]
    assert same_operator == pytest.approx(0.5, abs=0.12)
    assert abs(other_operator) < 0.12
    assert np.allclose(truth.sinr_db[:, 3], 10.0)  # satellites: no terrestrial shadowing


def test_over_reporting_biases_the_truth_down() -> None:
    c = corridor(0.3)
    m = flat_map(c)
    cfg = replace(QUIET, sigma_db=0.0, over_report_db=3.0)
    errs = [make_truth(c, m, NETS, seed=s, config=cfg).sinr_db[0, :3] - 10.0 for s in range(40)]
    assert np.mean(errs) == pytest.approx(-3.0, abs=0.4)


def test_missing_and_phantom_sites_make_stretches() -> None:
    c = corridor(0.3)
    m = flat_map(c)
    missing = make_truth(
        c, m, NETS, seed=2, config=replace(QUIET, missing_site_per_km=0.2, sigma_db=0.0)
    )
    dead = missing.dead[:, :3]
    assert dead.any() and not dead.all()
    # dead stretches are at least the shortest missing-site length
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, dead[:, 0].astype(int), 0])))[::2]
    assert (runs * 2.0 >= 500.0 - 2.0).all()
    nothing = replace(flat_map(c), sinr_db=np.full((len(c), 4), -30.0))
    phantom = make_truth(
        c, nothing, NETS, seed=2, config=replace(QUIET, phantom_site_per_km=0.2, sigma_db=0.0)
    )
    up = phantom.sinr_db[:, :3] >= QIN_SINR_DB
    assert up.any()  # coverage the map does not know
    assert phantom.sinr_db[:, :3].max() == pytest.approx(10.0, abs=0.1)  # the profile's peak


def test_satellites_blocked_under_bridges_only_on_the_footprint() -> None:
    c = corridor(0.05)
    under = np.zeros(len(c), dtype=bool)
    under[20] = True
    c = replace(c, under_bridge=under)
    m = flat_map(c)
    sinr = m.sinr_db.copy()
    sinr[20, 3] = -30.0  # the map blocks the whole segment
    m = replace(m, sinr_db=sinr)
    truth = make_truth(c, m, NETS, seed=0, config=QUIET)
    blocked = truth.dead[:, 3]
    assert blocked.any()
    assert blocked.sum() * 2.0 <= 22.0  # 20 m of 50, at 2 m per step
    centre = c.distance_m[20] + c.length_m[20] / 2
    assert np.abs(truth.distance_m[blocked] - centre).max() <= 10.0
    relock = make_truth(c, m, NETS, seed=0, config=replace(QUIET, sat_reacquire_s=1.0))
    assert relock.dead[:, 3].sum() == blocked.sum() + 10  # one second more at 100 ms


def test_no_signal_stays_no_signal() -> None:
    c = corridor(0.02)
    dead = QualityMatrix.from_columns(
        tuple(n.id for n in NETS), [Quality.empty(len(c), satellite=n.is_satellite) for n in NETS]
    )
    truth = make_truth(
        c, dead, NETS, seed=5, config=replace(TruthConfig(), phantom_site_per_km=0.0)
    )
    assert truth.dead.all()
    assert not truth.usable.any()


def test_segment_matrix_is_what_the_oracle_plans_with() -> None:
    c = corridor(0.02)
    truth = make_truth(c, flat_map(c), NETS, seed=1)
    seg = truth.segment_matrix(len(c))
    assert seg.shape == (len(c), 4)
    assert (seg.confidence == 1.0).all() and (seg.provenance == Provenance.MEASURED).all()
    first = truth.sinr_db[truth.segment == 0, 0]
    assert seg.sinr_db[0, 0] == pytest.approx(np.quantile(first, 0.25))
    assert truth.step_matrix().shape == (len(truth), 4)


def test_step_grid_follows_the_planned_speeds() -> None:
    c = corridor(0.01)
    t, d, seg = step_grid(c)
    assert np.allclose(np.diff(d), 2.0)  # 20 m/s at 100 ms
    assert seg[0] == 0 and seg[-1] == len(c) - 1
    assert len(t) == int(np.ceil(c.total_duration_s / 0.1 - 1e-9))


def test_bad_inputs_are_rejected() -> None:
    c = corridor(0.01)
    with pytest.raises(InvalidInputError, match="sigma_db"):
        TruthConfig(sigma_db=-1.0)
    with pytest.raises(InvalidInputError, match="missing_site_m"):
        TruthConfig(missing_site_m=(100.0, 50.0))
    with pytest.raises(InvalidInputError, match="rows"):
        make_truth(c, flat_map(corridor(0.02)), NETS)
    with pytest.raises(InvalidInputError, match="networks"):
        make_truth(c, flat_map(c), NETS[:2])
