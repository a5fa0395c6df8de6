"""Path-loss formulas against values worked by hand from the published equations.

References (the expected numbers below were computed step by step from these equations):

* Free space: ITU-R P.525-4 eq. (4), L = 32.45 + 20 log f(MHz) + 20 log d(km) (unrounded).
* COST-231 Hata: COST 231 Final Report (Damosso ed., 1999) ch. 4, urban ``Cm = 0``;
  suburban and open-area corrections of Hata (IEEE Trans. VT-29(3), 1980).
  f = 1800 MHz, hb = 30 m, hm = 1.5 m:
  a(hm) = (1.1 log 1800 - 0.7) 1.5 - (1.56 log 1800 - 0.8) = 0.0430 dB,
  L(1 km) = 46.3 + 33.9 log 1800 - 13.82 log 30 - 0.0430 = 136.197 dB, slope
  44.9 - 6.55 log 30 = 35.225 dB/decade, suburban -11.939 dB, open -31.923 dB.
* 3GPP TR 38.901 V17.0.0 Table 7.4.1-1. RMa at 800 MHz, hBS = 25 m, hUT = 1.5 m, h = 5 m,
  W = 20 m: dBP = 2 pi 25 1.5 0.8e9 / c = 628.75 m. UMa at 3.5 GHz, hBS = 25 m, hUT = 1.5 m:
  d'BP = 4 (24)(0.5) 3.5e9 / c = 560.39 m.
* ITU-R P.526-15 eqs. (26) and (31) for v and J(v).
"""

from __future__ import annotations

import numpy as np
import pytest

from commap.errors import InvalidInputError
from commap.radio.pathloss import (
    ENVIRONMENTS,
    cost231_hata_db,
    earth_bulge_m,
    free_space_db,
    fresnel_v,
    ground_distance_m,
    knife_edge_loss_db,
    link_loss_db,
    mix_los_nlos_db,
    model_loss_db,
    rma_db,
    rma_los_probability,
    terrain_diffraction_db,
    uma_db,
    uma_los_probability,
)

TOL_DB = 0.01


@pytest.mark.parametrize(
    ("distance_m", "frequency_mhz", "expected_db"),
    [
        (1000.0, 1000.0, 92.448),  # 32.45 + 60 + 0
        (2000.0, 800.0, 96.530),  # 32.45 + 58.06 + 6.02
        (0.0, 800.0, 50.510),  # clamped at 10 m: 96.530 - 20 log 200 (46.021)
    ],
)
def test_free_space_matches_p525(
    distance_m: float, frequency_mhz: float, expected_db: float
) -> None:
    assert free_space_db(distance_m, frequency_mhz) == pytest.approx(expected_db, abs=TOL_DB)


@pytest.mark.parametrize(
    ("distance_m", "environment", "expected_db"),
    [
        (1000.0, "urban", 136.197),
        (5000.0, "urban", 160.818),  # + 35.225 log 5
        (10_000.0, "urban", 171.422),  # + 35.225
        (1000.0, "suburban", 124.258),
        (10_000.0, "suburban", 159.483),
        (1000.0, "rural", 104.273),
        (5000.0, "rural", 128.895),
    ],
)
def test_cost231_hata_reference_values(
    distance_m: float, environment: str, expected_db: float
) -> None:
    got = cost231_hata_db(
        distance_m, 1800.0, base_height_m=30.0, mobile_height_m=1.5, environment=environment
    )
    assert got == pytest.approx(expected_db, abs=TOL_DB)


def test_cost231_never_below_free_space() -> None:
    # open-area Hata extrapolated to 50 m would undercut free space; the floor holds
    d = np.array([10.0, 50.0, 200.0])
    loss = cost231_hata_db(d, 1800.0, base_height_m=30.0, environment="rural")
    assert (loss >= free_space_db(d, 1800.0) - 1e-9).all()
    assert loss[1] == pytest.approx(free_space_db(50.0, 1800.0), abs=TOL_DB)


@pytest.mark.parametrize(
    ("distance_m", "los", "expected_db"),
    [
        (500.0, True, 85.781),  # PL1 below the breakpoint
        (1000.0, True, 96.054),  # PL1(dBP) + 40 log10(d3D / dBP)
        (5000.0, True, 124.008),
        (500.0, False, 109.499),  # PL'_NLOS > PL_LOS
        (1000.0, False, 121.251),
        (5000.0, False, 148.567),
    ],
)
def test_rma_reference_values(distance_m: float, los: bool, expected_db: float) -> None:
    got = rma_db(distance_m, 800.0, los=los, base_height_m=25.0, mobile_height_m=1.5)
    assert got == pytest.approx(expected_db, abs=TOL_DB)


@pytest.mark.parametrize(
    ("distance_m", "los", "expected_db"),
    [
        (200.0, True, 89.570),  # PL1 (d < d'BP)
        (1000.0, True, 109.406),  # PL2
        (200.0, False, 114.462),
        (1000.0, False, 141.666),
    ],
)
def test_uma_reference_values(distance_m: float, los: bool, expected_db: float) -> None:
    got = uma_db(distance_m, 3500.0, los=los, base_height_m=25.0, mobile_height_m=1.5)
    assert got == pytest.approx(expected_db, abs=TOL_DB)


def test_rma_los_is_continuous_at_the_breakpoint() -> None:
    d_bp = 2 * np.pi * 25.0 * 1.5 * 0.8e9 / 299_792_458.0
    below, above = rma_db([d_bp - 0.01, d_bp + 0.01], 800.0, los=True, base_height_m=25.0)
    assert above - below == pytest.approx(0.0, abs=0.01)


def test_los_probabilities_match_table_7_4_2_1() -> None:
    assert rma_los_probability([5.0, 1010.0]) == pytest.approx([1.0, np.exp(-1.0)])
    assert uma_los_probability([10.0, 100.0]) == pytest.approx([1.0, 0.34767], abs=1e-5)
    assert mix_los_nlos_db(100.0, 120.0, 0.25) == pytest.approx(115.0)


@pytest.mark.parametrize("model", ["auto", "cost231", "rma", "uma", "free_space"])
@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("frequency_mhz", [800.0, 3500.0])
def test_loss_grows_with_distance(model: str, environment: str, frequency_mhz: float) -> None:
    d = np.geomspace(20.0, 30_000.0, 500)  # across breakpoints and validity limits
    loss = model_loss_db(model, d, frequency_mhz, base_height_m=25.0, environment=environment)
    assert np.isfinite(loss).all()
    assert (np.diff(loss) > 0).all()
    assert (loss >= free_space_db(d, frequency_mhz) - 1e-9).all()


def test_auto_model_picks_uma_in_towns_and_rma_in_the_country() -> None:
    d = np.array([2000.0, 2000.0, 2000.0])
    auto = model_loss_db(
        "auto", d, 800.0, base_height_m=25.0, environment=["urban", "suburban", "rural"]
    )
    rma = model_loss_db("rma", d, 800.0, base_height_m=25.0)
    uma = model_loss_db("uma", d, 800.0, base_height_m=25.0)
    assert auto.tolist() == [uma[0], uma[1], rma[2]]
    assert rma[2] < uma[0]  # open country loses less than a town


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: model_loss_db("hata", [1.0], 800.0, base_height_m=25.0), "model"),
        (
            lambda: model_loss_db("auto", [1.0], 800.0, base_height_m=25.0, environment="city"),
            "environment",
        ),
        (
            lambda: cost231_hata_db([1.0], 800.0, base_height_m=25.0, environment=["x"]),
            "environment",
        ),
    ],
)
def test_bad_model_or_environment_is_rejected(call: object, field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        call()  # type: ignore[operator]
    assert info.value.field == field


@pytest.mark.parametrize(
    ("v", "expected_db"),
    [(-np.inf, 0.0), (-1.0, 0.0), (-0.78, 0.0), (0.0, 6.033), (1.0, 13.926), (2.4, 20.539)],
)
def test_knife_edge_j_of_v(v: float, expected_db: float) -> None:
    assert knife_edge_loss_db(v) == pytest.approx(expected_db, abs=TOL_DB)


def test_fresnel_v_and_earth_bulge() -> None:
    # v = h sqrt(2/lambda (1/d1 + 1/d2)) = 10 sqrt(2/0.375 * 2e-3) = 1.0328
    assert fresnel_v(10.0, 1000.0, 1000.0, 0.375) == pytest.approx(1.0328, abs=1e-4)
    # d1 d2 / (2 k a) = 1e8 / (2 * 4/3 * 6.371e6) = 5.886 m
    assert earth_bulge_m(10_000.0, 10_000.0) == pytest.approx(5.886, abs=1e-3)


def test_single_knife_edge_profile() -> None:
    # 4 km path, 60 m edge at mid-path, ends at 30 m and 1.5 m above flat ground, 800 MHz:
    # clearance = 60 + 0.235 (bulge) - 15.75 (ray) = 44.485 m, v = 3.2499, J = 23.098 dB.
    profile = np.array([[0.0, 0.0, 60.0, 0.0, 0.0]])
    loss = terrain_diffraction_db(profile, [4000.0], [30.0], [1.5], 800.0, smooth_reference=False)
    assert loss[0] == pytest.approx(23.098, abs=TOL_DB)
    # Over smooth ground the sample 1 km before the receiver already grazes the Fresnel zone
    # (clearance -8.45 m, v = -0.713, J = 0.45 dB): the excess over smooth ground is 22.65 dB.
    excess = terrain_diffraction_db(profile, [4000.0], [30.0], [1.5], 800.0)
    assert excess[0] == pytest.approx(23.098 - 0.450, abs=TOL_DB)


def test_clear_profile_has_no_loss_and_higher_ridges_lose_more() -> None:
    flat = np.zeros((1, 33))
    # smooth ground is the models' own reference: no extra loss, even though the ground near
    # the 1.5 m receiver grazes the Fresnel zone (plain Deygout counts that)
    assert terrain_diffraction_db(flat, [3000.0], [25.0], [1.5], 800.0)[0] == 0.0
    assert (
        terrain_diffraction_db(flat, [3000.0], [25.0], [1.5], 800.0, smooth_reference=False)[0]
        > 0.0
    )
    slope = np.linspace(0.0, 300.0, 33)[None, :]  # a uniform slope is smooth ground too
    assert terrain_diffraction_db(slope, [3000.0], [25.0], [1.5], 800.0)[0] == 0.0
    ridges = np.zeros((4, 33))
    ridges[:, 16] = [10.0, 40.0, 80.0, 160.0]
    loss = terrain_diffraction_db(
        ridges, np.full(4, 3000.0), np.full(4, 25.0), np.full(4, 1.5), 800.0
    )
    assert (np.diff(loss) > 0).all()


def test_deygout_adds_secondary_edges() -> None:
    one = np.zeros((1, 9))
    one[0, 4] = 100.0
    three = one.copy()
    three[0, 2] = 50.0  # 12.5 m below the ray to the principal top (v = -0.91): no loss
    three[0, 6] = 30.0
    bumps = one.copy()
    bumps[0, 1] = 80.0  # above the tx -> principal ray: a secondary edge
    bumps[0, 7] = 80.0

    def loss(profile: np.ndarray) -> float:
        return float(
            terrain_diffraction_db(profile, [8000.0], [25.0], [1.5], 800.0, smooth_reference=False)[
                0
            ]
        )

    assert loss(three) == pytest.approx(loss(one))
    assert loss(bumps) > loss(one) + 3.0


def test_empty_and_degenerate_inputs() -> None:
    assert free_space_db([], 800.0).shape == (0,)
    assert terrain_diffraction_db(np.zeros((0, 9)), [], [], [], 800.0).shape == (0,)
    assert terrain_diffraction_db(np.zeros((2, 2)), [1.0, 2.0], 25.0, 1.5, 800.0).tolist() == [
        0.0,
        0.0,
    ]
    loss = link_loss_db(
        tx_lon=[],
        tx_lat=[],
        tx_height_m=25.0,
        rx_lon=[],
        rx_lat=[],
        rx_height_m=1.5,
        frequency_mhz=800.0,
        environment=[],
    )
    assert loss.total_db.shape == (0,)
    # a point on the site: finite (distance clamped at 10 m)
    loss = link_loss_db(
        tx_lon=[1.5],
        tx_lat=[42.5],
        tx_height_m=25.0,
        rx_lon=[1.5],
        rx_lat=[42.5],
        rx_height_m=1.5,
        frequency_mhz=800.0,
        environment=["urban"],
    )
    assert np.isfinite(loss.total_db).all()


def test_ground_distance_against_the_meridian_arc() -> None:
    # 0.1 deg of latitude on a 6371 km sphere = 11119.5 m
    assert ground_distance_m(1.5, 42.5, 1.5, 42.6) == pytest.approx(11119.5, abs=0.5)
    # east-west at 42.5 N: 0.1 deg * cos(42.5) * 111195 m
    assert ground_distance_m(1.5, 42.5, 1.6, 42.5) == pytest.approx(8198.0, abs=5.0)
