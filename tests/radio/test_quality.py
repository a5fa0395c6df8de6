"""Quality values and the quality matrix, on quality sampled from the real built maps: shapes
and dtypes, stacking and taking apart, empty and degenerate inputs, the no-signal conventions
and the radio link monitoring thresholds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from commap.errors import InvalidInputError
from commap.geo.corridor import Corridor
from commap.geo.routefile import read_route_file
from commap.map.comm_map import CommMap
from commap.radio.quality import (
    NO_SATELLITE_ELEVATION_DEG,
    NO_SIGNAL_RSRP_DBM,
    NO_SIGNAL_SINR_DB,
    QIN_SINR_DB,
    QOUT_SINR_DB,
    Provenance,
    Quality,
    QualityMatrix,
)
from tests.support.paths import TEST_DATA

LA_VELLA = (1.5218, 42.5063)  # (lon, lat), the README trip
PAS_DE_LA_CASA = (1.7330, 42.5430)
TERRESTRIAL = ("ad-lte", "ad-nr", "es-lte", "fr-lte")
SATELLITE = ("starlink", "oneweb", "geo")
FIELDS = [f.name for f in dataclasses.fields(Quality)]


@pytest.fixture(scope="module")
def trip(andorra: CommMap) -> tuple[Corridor, QualityMatrix]:
    """The README trip's corridor (tunnels included) and its quality matrix."""
    corridor = andorra.corridor(andorra.routes(LA_VELLA, PAS_DE_LA_CASA)[0])
    return corridor, andorra.quality(corridor)


def _columns(matrix: QualityMatrix) -> list[Quality]:
    return [matrix.column(network_id) for network_id in matrix.network_ids]


# ------------------------------------------------------------------------ shapes and dtypes


def test_matrix_is_segments_by_networks(
    andorra: CommMap, trip: tuple[Corridor, QualityMatrix]
) -> None:
    corridor, matrix = trip
    assert matrix.network_ids == andorra.catalogue.ids == TERRESTRIAL + SATELLITE
    assert matrix.shape == (len(corridor), 7)
    for name in FIELDS:
        assert getattr(matrix, name).shape == matrix.shape, name
    for name in ("rsrp_dbm", "sinr_db", "elevation_deg", "confidence"):
        assert getattr(matrix, name).dtype == np.float64, name
    assert matrix.provenance.dtype == np.int8
    assert matrix.sample_count.dtype == np.int32


def test_from_columns_and_column_are_inverse(trip: tuple[Corridor, QualityMatrix]) -> None:
    _, matrix = trip
    rebuilt = QualityMatrix.from_columns(matrix.network_ids, _columns(matrix))
    assert rebuilt.shape == matrix.shape
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(rebuilt, name), getattr(matrix, name), err_msg=name)
    starlink = matrix.column("starlink")
    assert len(starlink) == matrix.shape[0]
    np.testing.assert_array_equal(starlink.sinr_db, matrix.sinr_db[:, 4])


def test_from_columns_keeps_the_given_network_order(trip: tuple[Corridor, QualityMatrix]) -> None:
    _, matrix = trip
    order = ("geo", "ad-nr")
    picked = QualityMatrix.from_columns(order, [matrix.column(n) for n in order])
    assert picked.shape == (matrix.shape[0], 2)
    np.testing.assert_array_equal(picked.elevation_deg[:, 0], matrix.column("geo").elevation_deg)
    np.testing.assert_array_equal(picked.sinr_db[:, 1], matrix.column("ad-nr").sinr_db)


def test_from_columns_casts_to_the_matrix_dtypes(andorra: CommMap) -> None:
    sampled = andorra.quality_at([LA_VELLA[0]], [LA_VELLA[1]])
    loose = [
        dataclasses.replace(
            q, provenance=q.provenance.astype(np.int64), sample_count=q.sample_count.astype(float)
        )
        for q in _columns(sampled)
    ]
    matrix = QualityMatrix.from_columns(sampled.network_ids, loose)
    assert matrix.provenance.dtype == np.int8 and matrix.sample_count.dtype == np.int32
    np.testing.assert_array_equal(matrix.provenance, sampled.provenance)


# ------------------------------------------------------------------- empty and degenerate


def test_one_column_per_network_is_required(trip: tuple[Corridor, QualityMatrix]) -> None:
    _, matrix = trip
    with pytest.raises(InvalidInputError, match="one quality column per network"):
        QualityMatrix.from_columns(matrix.network_ids, _columns(matrix)[:-1])
    with pytest.raises(InvalidInputError):
        QualityMatrix.from_columns((), _columns(matrix)[:1])


def test_no_points_gives_zero_rows(andorra: CommMap) -> None:
    matrix = andorra.quality_at([], [])
    assert matrix.shape == (0, 7)
    assert matrix.sinr_db.shape == (0, 7) and matrix.provenance.dtype == np.int8
    assert len(matrix.column("geo")) == 0
    empty = [Quality.empty(0) for _ in TERRESTRIAL]
    assert QualityMatrix.from_columns(TERRESTRIAL, empty).shape == (0, 4)


def test_no_networks_gives_an_empty_matrix() -> None:
    matrix = QualityMatrix.from_columns((), [])
    assert matrix.shape == (0, 0)
    assert matrix.sinr_db.shape == (0, 0) and matrix.sample_count.dtype == np.int32


def test_one_point_is_one_row(andorra: CommMap) -> None:
    matrix = andorra.quality_at(LA_VELLA[0], LA_VELLA[1])  # scalars are one point
    assert matrix.shape == (1, 7)
    assert matrix.sinr_db[0, 0] > QIN_SINR_DB  # the national LTE serves the capital


def test_unknown_network_is_named(trip: tuple[Corridor, QualityMatrix]) -> None:
    _, matrix = trip
    with pytest.raises(InvalidInputError, match="'iridium'") as caught:
        matrix.column("iridium")
    assert caught.value.field == "network_id"


@pytest.mark.parametrize(
    ("lon", "lat", "message"),
    [
        ([np.nan], [42.5], "finite"),
        ([1.5], [np.inf], "finite"),
        ([1.5, 1.6], [42.5], "same length"),
        ([[1.5, 1.6]], [[42.5, 42.6]], "1-D"),
        ([1.5], [91.0], "latitude"),
    ],
)
def test_bad_points_are_refused(andorra: CommMap, lon: object, lat: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        andorra.quality_at(lon, lat)


# ----------------------------------------------------------- conventions and thresholds


def test_empty_quality_is_no_signal_of_unknown_origin() -> None:
    terrestrial, satellite = Quality.empty(3), Quality.empty(3, satellite=True)
    assert len(terrestrial) == len(satellite) == 3
    assert (terrestrial.rsrp_dbm == NO_SIGNAL_RSRP_DBM).all()
    assert np.isnan(terrestrial.elevation_deg).all()  # no satellite elevation on the ground
    assert np.isnan(satellite.rsrp_dbm).all()  # no RSRP from a satellite link
    assert (satellite.elevation_deg == NO_SATELLITE_ELEVATION_DEG).all()
    for q in (terrestrial, satellite):
        assert (q.sinr_db == NO_SIGNAL_SINR_DB).all()
        assert (q.confidence == 0.0).all() and (q.sample_count == 0).all()
        assert (q.provenance == Provenance.NONE).all()


def test_thresholds_are_ordered() -> None:
    # no signal is out of sync; the in-sync threshold is above the out-of-sync one (hysteresis)
    assert NO_SIGNAL_SINR_DB < QOUT_SINR_DB < QIN_SINR_DB


def test_not_applicable_values_are_nan_on_the_map(trip: tuple[Corridor, QualityMatrix]) -> None:
    _, matrix = trip
    for network_id in TERRESTRIAL:
        q = matrix.column(network_id)
        assert np.isnan(q.elevation_deg).all() and not np.isnan(q.rsrp_dbm).any(), network_id
    for network_id in SATELLITE:
        q = matrix.column(network_id)
        assert np.isnan(q.rsrp_dbm).all() and not np.isnan(q.elevation_deg).any(), network_id
    assert not np.isnan(matrix.sinr_db).any()  # one link model serves every network
    assert (matrix.sinr_db >= NO_SIGNAL_SINR_DB).all()
    assert ((matrix.confidence >= 0.0) & (matrix.confidence <= 1.0)).all()


def test_tunnels_have_no_signal_at_all(trip: tuple[Corridor, QualityMatrix]) -> None:
    corridor, matrix = trip
    inside = corridor.in_tunnel
    assert inside.any()  # the Envalira tunnel
    assert (matrix.sinr_db[inside] == NO_SIGNAL_SINR_DB).all()
    assert (matrix.sinr_db[inside] < QOUT_SINR_DB).all()
    satellites = [matrix.network_ids.index(n) for n in SATELLITE]
    assert (matrix.elevation_deg[np.ix_(inside, satellites)] == NO_SATELLITE_ELEVATION_DEG).all()


def test_open_road_has_a_usable_network(trip: tuple[Corridor, QualityMatrix]) -> None:
    corridor, matrix = trip
    open_sky = ~corridor.in_tunnel & ~corridor.under_bridge
    assert (matrix.sinr_db[open_sky].max(axis=1) > QIN_SINR_DB).mean() > 0.95
    spanish = matrix.column("es-lte").sinr_db
    assert (spanish < QOUT_SINR_DB).all()  # Spain is behind the mountains on this trip


def test_modelled_map_has_no_measured_values(trip: tuple[Corridor, QualityMatrix]) -> None:
    _, matrix = trip
    assert set(np.unique(matrix.provenance)) == {Provenance.MODELLED}
    assert (matrix.sample_count == 0).all()


def test_measured_values_carry_their_samples(cork: CommMap) -> None:
    drive = read_route_file(TEST_DATA / "measured" / "cork_heldout_route.csv")
    matrix = cork.quality_at(drive.lon, drive.lat)
    measured = matrix.provenance == Provenance.MEASURED
    assert measured.any()
    # the learned map also answers between the measured H3 cells (records within 300 m)
    assert (matrix.sample_count[measured] > 0).mean() > 0.8
    assert (matrix.sample_count[~measured] == 0).all()
    lte = matrix.column("ie-b-lte")
    assert (lte.unknown == (lte.provenance == Provenance.NONE)).all()
    assert set(np.unique(matrix.provenance)) <= {p.value for p in Provenance}
