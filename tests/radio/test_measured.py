"""Measured coverage layers and fusion, on the Cork drive tests and the Indianapolis grid."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from h3.api import basic_int as h3i

from commap.errors import InvalidInputError
from commap.map.spec import MapSpec, read_spec
from commap.networks import Network, NetworkKind
from commap.radio.layers import LayerContext
from commap.radio.layers import load_layer as registry_load_layer
from commap.radio.layers.measured import (
    TABLE_COLUMNS,
    FusedLayer,
    LearnedLayer,
    MeasuredLayer,
    aggregate_records,
    confidence_from_count,
    link_kpis,
    load_fused_layer,
    load_layer,
    prepare_layer,
    prepare_measured,
)
from commap.radio.measurements import append_records, read_gnettrack, read_indianapolis_grid
from commap.radio.quality import (
    NO_SIGNAL_RSRP_DBM,
    NO_SIGNAL_SINR_DB,
    CoverageLayer,
    Provenance,
    Quality,
    QualityMatrix,
)
from tests.support.paths import MAPS, TEST_DATA

HELDOUT = TEST_DATA / "measured" / "ucc5g_cork_heldout.zip"
FAR_FROM_ROUTES = (-8.574, 51.959)  # north-west corner of the Cork map: no drive test there


def network(network_id: str) -> Network:
    return Network(
        id=network_id, kind=NetworkKind.TERRESTRIAL, operator="op", technology="lte", latency_ms=40
    )


def layer_spec(spec: MapSpec, network_id: str) -> Mapping[str, Any]:
    entry = next(n for n in spec.networks if n["id"] == network_id)
    layer: Mapping[str, Any] = entry["layer"]
    return layer


def filled(q: Quality) -> tuple[np.ndarray, np.ndarray]:
    """``outage_prob`` and ``unknown`` of a quality (always filled by ``Quality``)."""
    assert q.outage_prob is not None and q.unknown is not None
    return q.outage_prob, q.unknown


class ConstantLayer:
    """A real (if simple) modelled layer: the same quality everywhere; counts its points."""

    def __init__(self, network_id: str, *, rsrp_dbm: float, sinr_db: float) -> None:
        self.network_id = network_id
        self.rsrp_dbm = rsrp_dbm
        self.sinr_db = sinr_db
        self.points_sampled = 0

    def sample(
        self,
        lon: np.ndarray,
        lat: np.ndarray,
        t_s: np.ndarray,
        *,
        in_tunnel: np.ndarray | None = None,
        under_bridge: np.ndarray | None = None,
    ) -> Quality:
        n = len(lon)
        self.points_sampled += n
        return Quality(
            rsrp_dbm=np.full(n, self.rsrp_dbm),
            sinr_db=np.full(n, self.sinr_db),
            elevation_deg=np.full(n, np.nan),
            confidence=np.full(n, 0.3),
            provenance=np.full(n, Provenance.MODELLED, dtype=np.int8),
            sample_count=np.zeros(n, dtype=np.int32),
        )


# --- the Cork map's measured network ---------------------------------------------------------
@pytest.fixture(scope="module")
def cork_spec() -> MapSpec:
    return read_spec(MAPS / "cork" / "map.toml")


@pytest.fixture(scope="module")
def cork_ctx(cork_spec: MapSpec, tmp_path_factory: pytest.TempPathFactory) -> LayerContext:
    built = tmp_path_factory.mktemp("cork-built")
    return LayerContext(source_dir=cork_spec.source_dir, built_dir=built, bbox=cork_spec.bbox)


@pytest.fixture(scope="module")
def cork_prepared(cork_spec: MapSpec, cork_ctx: LayerContext) -> dict[str, Any]:
    return prepare_layer(network("ie-b-lte"), layer_spec(cork_spec, "ie-b-lte"), cork_ctx)


@pytest.fixture(scope="module")
def cork_learned(cork_prepared: dict[str, Any], cork_ctx: LayerContext) -> LearnedLayer:
    layer = load_layer(network("ie-b-lte"), cork_prepared, cork_ctx)
    assert isinstance(layer, LearnedLayer)
    return layer


@pytest.fixture(scope="module")
def cork_layer(cork_learned: LearnedLayer) -> MeasuredLayer:
    """The H3 statistics under the learned layer."""
    return cork_learned.cells


@pytest.fixture(scope="module")
def cork_records(cork_spec: MapSpec) -> pd.DataFrame:
    spec = layer_spec(cork_spec, "ie-b-lte")
    return read_gnettrack(
        cork_spec.source_dir / spec["files"][0],
        network_id="ie-b-lte",
        network_modes=spec["network_modes"],
    )


def test_prepared_table_is_geoparquet_with_provenance(
    cork_prepared: dict[str, Any], cork_ctx: LayerContext, cork_records: pd.DataFrame
) -> None:
    assert cork_prepared["table"] == "measured/ie-b-lte.parquet"
    assert cork_prepared["h3_resolution"] == 11
    table = gpd.read_parquet(cork_ctx.built_dir / cork_prepared["table"])
    assert list(table.columns) == [*TABLE_COLUMNS, "geometry"]
    assert table.crs.to_epsg() == 4326
    assert (table["provenance"] == "measured").all()
    assert cork_prepared["cells"] == len(table) > 500
    assert cork_prepared["samples"] == int(table["sample_count"].sum()) == len(cork_records)
    np.testing.assert_allclose(table.geometry.x, table["lon"])
    assert all(h3i.get_resolution(h3i.str_to_int(c)) == 11 for c in table["h3_cell"])


def test_cell_medians_are_the_records_medians(
    cork_layer: MeasuredLayer, cork_records: pd.DataFrame
) -> None:
    cells = [
        h3i.int_to_str(h3i.latlng_to_cell(a, b, 11))
        for a, b in zip(cork_records["lat"], cork_records["lon"], strict=True)
    ]
    expected = cork_records.groupby(pd.Series(cells, index=cork_records.index))["rsrp_dbm"]
    table = cork_layer.table.set_index("h3_cell")
    np.testing.assert_allclose(table["rsrp_dbm_median"], expected.median().loc[table.index])
    np.testing.assert_array_equal(table["sample_count"], expected.size().loc[table.index])
    np.testing.assert_allclose(table["rsrp_dbm_p10"], expected.quantile(0.1).loc[table.index])


def test_serving_cell_median_rsrp_is_reproduced(
    cork_layer: MeasuredLayer, cork_records: pd.DataFrame
) -> None:
    """Per serving cell (RAWCELLID), median RSRP of the traces vs of the layer at its samples.

    Not exact by construction: an H3 cell (~50 m) holds samples of several serving cells
    (handover zones, 5G anchor changes, other days), so the layer returns the cell's pooled
    median, not the serving cell's own; both medians agree within 1-2 dB.
    """
    q = cork_layer.sample(cork_records["lon"].to_numpy(), cork_records["lat"].to_numpy(), 0.0)
    assert (q.provenance == Provenance.MEASURED).all()
    per_cell = (
        cork_records.assign(layer_rsrp_dbm=q.rsrp_dbm)
        .groupby("cell_id")
        .agg(
            n=("rsrp_dbm", "size"), trace=("rsrp_dbm", "median"), layer=("layer_rsrp_dbm", "median")
        )
    )
    busy = per_cell[per_cell["n"] >= 50]
    error_db = (busy["layer"] - busy["trace"]).abs()
    assert len(busy) >= 40
    assert error_db.median() <= 1.5
    assert np.average(error_db, weights=busy["n"]) <= 2.0
    assert abs((busy["layer"] - busy["trace"]).mean()) <= 1.0  # no bias


def test_provenance_measured_on_route_none_elsewhere(
    cork_layer: MeasuredLayer, cork_records: pd.DataFrame
) -> None:
    on = cork_records.iloc[::97]
    lon = np.r_[on["lon"].to_numpy(), FAR_FROM_ROUTES[0]]
    lat = np.r_[on["lat"].to_numpy(), FAR_FROM_ROUTES[1]]
    q = cork_layer.sample(lon, lat, np.zeros_like(lon))
    assert (q.provenance[:-1] == Provenance.MEASURED).all()
    assert (q.sample_count[:-1] >= 1).all() and (q.confidence[:-1] > 0).all()
    assert q.provenance[-1] == Provenance.NONE
    assert (q.rsrp_dbm[-1], q.sinr_db[-1], q.confidence[-1], q.sample_count[-1]) == (
        NO_SIGNAL_RSRP_DBM,
        NO_SIGNAL_SINR_DB,
        0.0,
        0,
    )
    assert np.isnan(q.elevation_deg).all()


def test_confidence_grows_with_sample_count(cork_layer: MeasuredLayer) -> None:
    table = cork_layer.table.sort_values("sample_count")
    q = cork_layer.sample(table["lon"].to_numpy(), table["lat"].to_numpy(), 0.0)
    np.testing.assert_array_equal(q.sample_count, table["sample_count"])
    assert np.all(np.diff(q.confidence) >= 0)
    assert q.confidence[0] < 0.5 < q.confidence[-1] < 1.0
    np.testing.assert_allclose(q.confidence, confidence_from_count(q.sample_count))
    assert confidence_from_count([1, 5, 20, 100]).round(2).tolist() == [0.17, 0.5, 0.8, 0.95]


def _empty_cell_next_to_data(layer: MeasuredLayer) -> int:
    measured = {h3i.str_to_int(c) for c in layer.table["h3_cell"]}
    for cell in sorted(measured):
        for neighbour in h3i.grid_disk(cell, 1):
            if neighbour not in measured:
                return int(neighbour)
    raise AssertionError("no empty neighbour")


def test_neighbour_fallback_and_tunnels(
    cork_layer: MeasuredLayer, cork_prepared: dict[str, Any], cork_ctx: LayerContext
) -> None:
    cell = _empty_cell_next_to_data(cork_layer)
    lat, lon = h3i.cell_to_latlng(cell)
    ring = cork_layer.table[
        cork_layer.table["h3_cell"].isin([h3i.int_to_str(c) for c in h3i.grid_disk(cell, 1)])
    ]
    q = cork_layer.sample([lon, lon], [lat, lat], [0.0, 0.0], in_tunnel=np.array([False, True]))
    assert q.provenance.tolist() == [Provenance.MEASURED, Provenance.NONE]
    assert q.sample_count[0] == ring["sample_count"].sum()
    assert q.confidence[0] == pytest.approx(0.5 * confidence_from_count(q.sample_count[0])[0])
    weights = ring["sample_count"].to_numpy()
    assert q.sinr_db[0] == pytest.approx(np.average(ring["sinr_db_median"], weights=weights))
    # a tunnel never measured has no signal: the road outside says nothing about the tube
    assert (q.rsrp_dbm[1], q.sinr_db[1]) == (NO_SIGNAL_RSRP_DBM, NO_SIGNAL_SINR_DB)
    strict = load_layer(
        network("ie-b-lte"), {**cork_prepared, "neighbour_fallback": False}, cork_ctx
    )
    assert isinstance(strict, LearnedLayer)
    assert strict.cells.sample([lon], [lat], [0.0]).provenance.tolist() == [Provenance.NONE]


def test_measured_tunnel_cell_keeps_its_measurement(cork_layer: MeasuredLayer) -> None:
    row = cork_layer.table.iloc[0]
    q = cork_layer.sample([row["lon"]], [row["lat"]], [0.0], in_tunnel=np.array([True]))
    assert q.provenance.tolist() == [Provenance.MEASURED]
    assert q.rsrp_dbm[0] == row["rsrp_dbm_median"]


def test_lookup_keeps_throughput_and_provenance(
    cork_layer: MeasuredLayer, cork_records: pd.DataFrame
) -> None:
    rec = cork_records.iloc[1000]
    rows = cork_layer.lookup([rec["lon"], FAR_FROM_ROUTES[0]], [rec["lat"], FAR_FROM_ROUTES[1]])
    assert rows["provenance"].tolist() == ["measured", "none"]
    assert rows["sample_count"].iloc[1] == 0
    assert np.isfinite(rows["throughput_dl_mbps_median"].iloc[0])
    assert rows["throughput_dl_mbps_p10"].iloc[0] <= rows["throughput_dl_mbps_p90"].iloc[0]


def test_heldout_drive_is_predicted(cork_layer: MeasuredLayer) -> None:
    held = read_gnettrack(HELDOUT, network_id="ie-b-lte", network_modes=["LTE", "5G"])
    q = cork_layer.sample(held["lon"].to_numpy(), held["lat"].to_numpy(), 0.0)
    measured = q.provenance == Provenance.MEASURED
    assert measured.mean() > 0.8
    error_db = np.abs(q.rsrp_dbm[measured] - held["rsrp_dbm"].to_numpy()[measured])
    constant_db = np.abs(held["rsrp_dbm"] - held["rsrp_dbm"].median())
    assert np.median(error_db) < 0.5 * np.median(constant_db)


def test_sample_validates_inputs(cork_layer: MeasuredLayer) -> None:
    assert len(cork_layer.sample([], [], [])) == 0
    with pytest.raises(InvalidInputError):
        cork_layer.sample([np.nan], [51.9], [0.0])
    with pytest.raises(InvalidInputError, match="in_tunnel"):
        cork_layer.sample([-8.4], [51.9], [0.0], in_tunnel=np.array([True, False]))
    assert isinstance(cork_layer, CoverageLayer)


# --- the learned map the layer answers with ----------------------------------------------------
def test_prepared_layer_holds_the_learned_models(
    cork_prepared: dict[str, Any], cork_ctx: LayerContext, cork_learned: LearnedLayer
) -> None:
    learned = cork_prepared["learned"]
    assert learned["link_kpis"] == ["sinr_db"]  # the drive tests measure SINR: it decides
    assert learned["outage"] == {"sinr_db": "< -5"}
    assert sorted(learned["models"]) == ["rsrp_dbm", "sinr_db"]
    for rel in learned["models"].values():
        assert (cork_ctx.built_dir / rel).is_file() and rel.startswith("learned/ie-b-lte/")
    assert cork_learned.link_kpis == ("sinr_db",)


def test_far_from_drives_is_unknown_with_the_prior_not_dead(cork_learned: LearnedLayer) -> None:
    from commap.radio.link import LinkModel

    q = cork_learned.sample([FAR_FROM_ROUTES[0]], [FAR_FROM_ROUTES[1]], [0.0])
    outage, unknown = filled(q)
    assert unknown.tolist() == [True] and q.provenance.tolist() == [Provenance.NONE]
    assert q.confidence.tolist() == [0.0]
    model = cork_learned.models["sinr_db"]
    assert q.sinr_db[0] == pytest.approx(model.prior_quantiles[1])
    assert q.rsrp_dbm[0] == pytest.approx(cork_learned.models["rsrp_dbm"].prior_quantiles[1])
    assert outage[0] == pytest.approx(model.prior_rate, abs=1e-3)
    matrix = QualityMatrix.from_columns(("ie-b-lte",), [q])
    assert LinkModel().point_outage(matrix, [network("ie-b-lte")])[0, 0] < 0.5


def test_learned_layer_predicts_the_heldout_drive(cork_learned: LearnedLayer) -> None:
    held = read_gnettrack(HELDOUT, network_id="ie-b-lte", network_modes=["LTE", "5G"])
    held = held.dropna(subset=["sinr_db"]).reset_index(drop=True)
    q = cork_learned.sample(held["lon"].to_numpy(), held["lat"].to_numpy(), 0.0)
    outage, unknown = filled(q)
    known = ~unknown
    assert known.mean() > 0.8
    assert ((q.provenance == Provenance.MEASURED) == known).all()
    assert np.isfinite(outage).all() and (q.sinr_db > NO_SIGNAL_SINR_DB).all()
    error_db = np.abs(q.rsrp_dbm[known] - held["rsrp_dbm"].to_numpy()[known])
    constant_db = np.abs(held["rsrp_dbm"] - held["rsrp_dbm"].median())
    assert np.nanmedian(error_db) < 0.6 * np.nanmedian(constant_db)
    # where the held-out drive lost the link, the map predicted a higher outage probability
    lost = held["sinr_db"].to_numpy() < -5.0
    assert lost.sum() > 20
    assert outage[lost].mean() > 1.2 * outage[~lost].mean()  # 0.160 vs 0.123
    # confidence grows with the drives near, and is 0 where unknown
    assert (q.confidence[~known] == 0).all() and q.confidence[known].max() > 0.5


def test_learned_tunnels_count_only_tunnel_data(cork_learned: LearnedLayer) -> None:
    row = cork_learned.table.iloc[0]
    cell = _empty_cell_next_to_data(cork_learned.cells)
    lat, lon = h3i.cell_to_latlng(cell)
    q = cork_learned.sample(
        [row["lon"], lon, lon], [row["lat"], lat, lat], 0.0, in_tunnel=[True, True, False]
    )
    outage, unknown = filled(q)
    # a measured tunnel cell keeps its own statistics; the link model judges them
    assert q.provenance[0] == Provenance.MEASURED and not unknown[0]
    assert q.rsrp_dbm[0] == row["rsrp_dbm_median"] and np.isnan(outage[0])
    # an unmeasured tunnel is unknown with the prior: neither dead nor the road outside
    prior = cork_learned.models["sinr_db"]
    assert unknown[1] and q.provenance[1] == Provenance.NONE
    assert q.sinr_db[1] == pytest.approx(prior.prior_quantiles[1]) != NO_SIGNAL_SINR_DB
    assert outage[1] == pytest.approx(prior.prior_rate, abs=1e-3)
    assert not unknown[2] and q.sinr_db[2] != q.sinr_db[1]  # the same place in the open


def test_fused_learned_layer_leaves_unknown_to_the_modelled_layer(
    cork_learned: LearnedLayer, cork_records: pd.DataFrame
) -> None:
    modelled = ConstantLayer("ie-b-lte", rsrp_dbm=-99.5, sinr_db=3.25)
    fused = FusedLayer(modelled, cork_learned, dense_min_samples=1000)
    rec = cork_records.iloc[500]
    q = fused.sample([rec["lon"], FAR_FROM_ROUTES[0]], [rec["lat"], FAR_FROM_ROUTES[1]], 0.0)
    outage, unknown = filled(q)
    # known: the learned map wins, whatever the H3 cell's sample count
    assert q.provenance[0] == Provenance.MEASURED and np.isfinite(outage[0])
    # unknown to the learned map: the modelled value stands
    assert q.provenance[1] == Provenance.MODELLED and not unknown[1]
    assert (q.rsrp_dbm[1], q.sinr_db[1]) == (-99.5, 3.25) and np.isnan(outage[1])
    assert modelled.points_sampled == 1


def test_link_kpi_choice_follows_the_records() -> None:
    held = read_gnettrack(HELDOUT, network_id="x")
    assert link_kpis(held) == ("sinr_db",)
    assert link_kpis(held.drop(columns="sinr_db")) == ("throughput_dl_mbps",)
    rsrp_only = held[["lat", "lon", "rsrp_dbm"]]
    assert link_kpis(rsrp_only) == ("rsrp_dbm",)
    with pytest.raises(InvalidInputError, match="none of"):
        link_kpis(held[["lat", "lon"]])


# --- fusion ------------------------------------------------------------------------------------
def test_fused_layer_measured_where_dense_modelled_elsewhere(cork_layer: MeasuredLayer) -> None:
    modelled = ConstantLayer("ie-b-lte", rsrp_dbm=-99.5, sinr_db=3.25)
    fused = FusedLayer(modelled, cork_layer, dense_min_samples=10)
    table = cork_layer.table
    dense = table[table["sample_count"] >= 10].iloc[:50]
    sparse = table[table["sample_count"] < 10].iloc[:50]
    lon = np.r_[dense["lon"], sparse["lon"], FAR_FROM_ROUTES[0]]
    lat = np.r_[dense["lat"], sparse["lat"], FAR_FROM_ROUTES[1]]
    q = fused.sample(lon, lat, np.zeros_like(lon))
    n = len(dense)
    assert (q.provenance[:n] == Provenance.MEASURED).all()
    np.testing.assert_array_equal(q.rsrp_dbm[:n], dense["rsrp_dbm_median"])
    assert (q.provenance[n:] == Provenance.MODELLED).all()
    assert (q.rsrp_dbm[n:] == -99.5).all() and (q.sinr_db[n:] == 3.25).all()
    assert (q.sample_count[n:] == 0).all()
    assert modelled.points_sampled == len(sparse) + 1  # modelled only where needed
    # provenance survives into the corridor quality matrix
    matrix = QualityMatrix.from_columns(("ie-b-lte",), [q])
    assert matrix.column("ie-b-lte").provenance.tolist() == q.provenance.tolist()
    assert isinstance(fused, CoverageLayer) and fused.network_id == "ie-b-lte"


def test_fused_layer_rejects_bad_threshold(cork_layer: MeasuredLayer) -> None:
    with pytest.raises(InvalidInputError, match="dense_min_samples"):
        FusedLayer(cork_layer, cork_layer, dense_min_samples=0)


def test_measured_table_from_fleet_records(tmp_path: Path) -> None:
    """[networks.measured] from a directory of fleet-report parts, fused with a modelled layer."""
    held = read_gnettrack(HELDOUT, network_id="ie-b-lte", network_modes=["LTE", "5G"])
    fleet = tmp_path / "src" / "data" / "fleet"
    append_records(held.iloc[:800], fleet)
    append_records(held.iloc[800:], fleet)
    other = held.iloc[:50].assign(network_id="other-net")
    append_records(other, fleet)
    ctx = LayerContext(
        source_dir=tmp_path / "src", built_dir=tmp_path / "built", bbox=(-8.6, 51.85, -8.3, 52.0)
    )
    net = network("ie-b-lte")
    spec = {"format": "records", "files": ["data/fleet"], "dense_min_samples": 3}
    prepared = prepare_measured(net, spec, ctx)
    assert prepared["table"] == "measured/ie-b-lte.fused.parquet"
    assert prepared["dense_min_samples"] == 3
    assert prepared["samples"] == len(held)  # the other network's rows are not mixed in
    modelled = ConstantLayer("ie-b-lte", rsrp_dbm=-120.0, sinr_db=-2.0)
    fused = load_fused_layer(net, modelled, prepared, ctx)
    lon = np.r_[held["lon"].to_numpy(), FAR_FROM_ROUTES[0]]
    lat = np.r_[held["lat"].to_numpy(), FAR_FROM_ROUTES[1]]
    q = fused.sample(lon, lat, np.zeros_like(lon))
    assert q.provenance[-1] == Provenance.MODELLED and q.rsrp_dbm[-1] == -120.0
    dense = q.provenance == Provenance.MEASURED
    assert (q.sample_count[dense] >= 3).all() and dense.mean() > 0.7
    assert set(q.provenance.tolist()) == {Provenance.MEASURED, Provenance.MODELLED}


def test_aggregate_counts_disconnected_samples_as_no_signal() -> None:
    records = pd.DataFrame(
        {
            "lat": [51.9] * 3,
            "lon": [-8.4] * 3,
            "rsrp_dbm": [-90.0, -92.0, np.nan],
            "sinr_db": [10.0, 12.0, np.nan],
            "connected": pd.array([True, False, False], dtype="boolean"),
        }
    )
    table = aggregate_records(records)
    assert table["sample_count"].tolist() == [3]
    assert table["rsrp_dbm_median"].tolist() == [NO_SIGNAL_RSRP_DBM]
    assert table["connected_ratio"].tolist() == [pytest.approx(1 / 3)]


# --- spec errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"format": "kml"}, "format 'kml' must be one of"),
        ({"files": []}, "files must be a non-empty list"),
        ({"files": ["data/nope.zip"]}, "data/nope.zip does not exist"),
        ({"h3_resolution": 16}, "h3_resolution must be within 0..15"),
        ({"min_samples": 0}, "min_samples must be an integer >= 1"),
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"type": "terrestrial"}, "type must be 'measured'"),
        ({"bandwidth_mhz": 10.0}, "'bandwidth_mhz' does not apply to format 'gnettrack'"),
        ({"network_modes": ["GPRS"]}, "no usable G-NetTrack rows"),
        ({"start": "2030-01-01T00:00:00Z"}, "no measurements inside the map bbox"),
    ],
)
def test_spec_errors(
    cork_spec: MapSpec, cork_ctx: LayerContext, change: dict[str, Any], problem: str
) -> None:
    spec = {**layer_spec(cork_spec, "ie-b-lte"), **change}
    with pytest.raises(InvalidInputError, match=problem):
        prepare_layer(network("ie-b-lte"), spec, cork_ctx)


def test_nothing_inside_bbox(cork_spec: MapSpec, tmp_path: Path) -> None:
    ctx = LayerContext(source_dir=cork_spec.source_dir, built_dir=tmp_path, bbox=(0, 0, 1, 1))
    with pytest.raises(InvalidInputError, match="no measurements inside the map bbox"):
        prepare_layer(network("ie-b-lte"), layer_spec(cork_spec, "ie-b-lte"), ctx)


def test_load_errors(cork_ctx: LayerContext, cork_prepared: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match="no table"):
        load_layer(network("x"), {"type": "measured"}, cork_ctx)
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_layer(network("x"), {**cork_prepared, "table": "measured/none.parquet"}, cork_ctx)
    with pytest.raises(InvalidInputError, match="resolution 11, spec says 10"):
        load_layer(network("x"), {**cork_prepared, "h3_resolution": 10}, cork_ctx)


# --- Indianapolis: three operators measured on one grid ----------------------------------------
@pytest.fixture(scope="module")
def indy_spec() -> MapSpec:
    return read_spec(MAPS / "indianapolis" / "map.toml")


@pytest.fixture(scope="module")
def indy_layers(
    indy_spec: MapSpec, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, MeasuredLayer]:
    ctx = LayerContext(
        source_dir=indy_spec.source_dir,
        built_dir=tmp_path_factory.mktemp("indy-built"),
        bbox=indy_spec.bbox,
    )
    layers = {}
    for entry in indy_spec.networks:
        net = network(entry["id"])
        prepared = prepare_layer(net, entry["layer"], ctx)
        layer = registry_load_layer(net, prepared, ctx)  # through the layer registry
        assert isinstance(layer, LearnedLayer)
        layers[net.id] = layer.cells
    return layers


def test_indianapolis_three_operators(
    indy_layers: dict[str, MeasuredLayer], indy_spec: MapSpec
) -> None:
    assert sorted(indy_layers) == ["att", "tmobile", "verizon"]
    lon0, lat0, lon1, lat1 = indy_spec.bbox
    for layer in indy_layers.values():
        table = layer.table
        assert layer.cell_count > 300
        # cells at the edge reach out by at most half a square plus a cell (~60 m)
        assert table["lat"].between(lat0 - 7e-4, lat1 + 7e-4).all()
        assert table["lon"].between(lon0 - 7e-4, lon1 + 7e-4).all()
    assert indy_layers["att"].table["rsrp_dbm_median"].isna().all()
    tmo = indy_layers["tmobile"].table
    assert tmo["rsrp_dbm_median"].notna().mean() > 0.9
    # one street point, three operators, three different measured qualities
    lat, lon = 39.7705, -86.1575
    values = {k: v.sample([lon], [lat], [0.0]) for k, v in indy_layers.items()}
    assert all(q.provenance[0] == Provenance.MEASURED for q in values.values())
    assert len({round(float(q.sinr_db[0]), 3) for q in values.values()}) == 3


@pytest.mark.parametrize("operator", ["att", "tmobile", "verizon"])
def test_indianapolis_keeps_every_grid_square(
    indy_layers: dict[str, MeasuredLayer], indy_spec: MapSpec, operator: str
) -> None:
    entry = next(n for n in indy_spec.networks if n["id"] == operator)
    grid = read_indianapolis_grid([indy_spec.source_dir / f for f in entry["layer"]["files"]])
    lon0, lat0, lon1, lat1 = indy_spec.bbox
    inside = grid[grid["lat"].between(lat0, lat1) & grid["lon"].between(lon0, lon1)]
    served = inside[inside["sinr_db_median"].notna()]  # squares with RSRP only serve no value
    assert len(served) > 300
    layer = indy_layers[operator]
    # every square's centre and corners lie in cells that carry its values
    for d_lat, d_lon in [(0.0, 0.0), (0.0002, 0.0002), (-0.0002, -0.0002)]:
        q = layer.sample(served["lon"] + d_lon, served["lat"] + d_lat, np.zeros(len(served)))
        assert (q.provenance == Provenance.MEASURED).all()
        assert (q.sample_count > 0).all()
    # a cell's value is a weighted mean of the squares it overlaps: within their range
    rows = layer.lookup(served["lon"], served["lat"])
    low, high = served["sinr_db_median"].min(), served["sinr_db_median"].max()
    assert rows["link_sinr_db"].between(low - 1e-9, high + 1e-9).all()
    assert rows["throughput_dl_mbps_median"].notna().all()
    # with the cell's own square dominant, its value stays close to the square's
    close = np.abs(rows["sinr_db_median"].to_numpy() - served["sinr_db_median"].to_numpy()) < 3
    assert close.mean() > 0.6


@pytest.mark.integration
def test_indianapolis_map_builds_and_keeps_provenance(tmp_path: Path) -> None:
    from commap.map.build import build_map
    from commap.map.comm_map import CommMap

    built = build_map(MAPS / "indianapolis" / "map.toml", tmp_path / "built")
    cmap = CommMap.load(built)
    matrix = cmap.quality_at([-86.1575, -86.1445], [39.7705, 39.7650])
    assert matrix.network_ids == ("att", "tmobile", "verizon")
    assert (matrix.provenance[0] == Provenance.MEASURED).all()
    assert (matrix.sample_count[0] > 0).all()
    described = {n["id"]: n for n in cmap.describe()["networks"]}
    assert described["tmobile"]["layer"]["format"] == "grid"


# --- records with one kind of value only ---------------------------------------------------------
STARLINK = TEST_DATA / "starlink_autobahn" / "throughput.zip"


def starlink_records() -> pd.DataFrame:
    """The Autobahn Starlink drive as throughput-only records (iperf3 DL/UL, Mbit/s)."""
    raw = pd.read_csv(STARLINK).dropna(subset=["Latitude", "Longitude", "download"])
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime(raw["timestamp_gmt_iphone"], utc=True),
            "lat": raw["Latitude"],
            "lon": raw["Longitude"],
            "network_id": "starlink",
            "throughput_dl_mbps": raw["download"],
            "throughput_ul_mbps": raw["upload"],
        }
    ).reset_index(drop=True)


@pytest.mark.parametrize("only", ["throughput_dl_mbps", "rsrp_dbm", "connected"])
def test_records_with_one_value_give_a_layer_with_values(only: str) -> None:
    held = read_gnettrack(HELDOUT, network_id="x")
    records = held[["timestamp", "lat", "lon", "network_id", only]]
    layer = MeasuredLayer("x", aggregate_records(records))
    assert layer.cell_count > 100
    q = layer.sample(records["lon"], records["lat"], np.zeros(len(records)))
    assert (q.provenance == Provenance.MEASURED).all()
    assert np.isfinite(q.sinr_db).all() and (q.sinr_db > NO_SIGNAL_SINR_DB).mean() > 0.9
    if only == "rsrp_dbm":  # RSRP kept as measured; SINR its noise-limited equivalent
        assert np.isfinite(q.rsrp_dbm).all()


def test_measured_satellite_throughput_is_not_dead() -> None:
    from commap.radio.link import LinkModel

    records = starlink_records()
    table = aggregate_records(records)
    assert table["throughput_ul_mbps_median"].notna().all()
    layer = MeasuredLayer("starlink", table, neighbour_fallback=False)
    q = layer.sample(records["lon"], records["lat"], np.zeros(len(records)))
    assert np.isnan(q.elevation_deg).all()  # measured: no elevation
    leo = Network(
        id="starlink", kind=NetworkKind.LEO, operator="starlink", technology="leo", latency_ms=40
    )
    outage = LinkModel().point_outage(QualityMatrix.from_columns(("starlink",), [q]), [leo])
    assert np.median(outage) < 0.2  # Starlink held most of the drive
    far = layer.sample([FAR_FROM_ROUTES[0]], [FAR_FROM_ROUTES[1]], [0.0])
    unmeasured = LinkModel().point_outage(QualityMatrix.from_columns(("starlink",), [far]), [leo])
    assert unmeasured.tolist() == [[1.0]]


# --- the ingest report ---------------------------------------------------------------------------
def test_ingest_report_counts_match_hand_counts(tmp_path: Path) -> None:
    held = read_gnettrack(HELDOUT, network_id="ie-b-lte")
    mixed = pd.concat([held, held.iloc[:40].assign(network_id="ie-c-lte")], ignore_index=True)
    source = tmp_path / "src"
    source.mkdir()
    mixed.to_parquet(source / "drive.parquet")
    bbox = (-8.6, 51.85, -8.40, 52.0)  # cuts the drive's eastern part off
    start, end = "2019-12-03T07:32:00Z", "2019-12-03T07:55:00Z"
    ctx = LayerContext(source_dir=source, built_dir=tmp_path / "built", bbox=bbox)
    spec = {"format": "records", "files": ["drive.parquet"], "start": start, "end": end}
    ingest = prepare_layer(network("ie-b-lte"), spec, ctx)["ingest"]
    # by hand
    own = held
    in_window = own["timestamp"].between(pd.Timestamp(start), pd.Timestamp(end), inclusive="left")
    windowed = own[in_window]
    inside = windowed["lon"].between(bbox[0], bbox[2]) & windowed["lat"].between(bbox[1], bbox[3])
    kept = windowed[inside]
    assert 0 < len(kept) < len(windowed) < len(own)
    for field in ("rsrp_dbm", "sinr_db", "rtt_ms", "connected"):
        has = lambda df, f=field: int(df[f].notna().sum())  # noqa: E731
        expected_dropped = {
            "wrong_network_id": 40 if field != "rtt_ms" else 0,
            "out_of_time_window": has(own) - has(windowed),
            "out_of_bbox": has(windowed) - has(kept),
            "nan": len(kept) - has(kept),
        }
        assert ingest[field]["used"] == has(kept)
        assert ingest[field]["dropped"] == {k: v for k, v in expected_dropped.items() if v}
    assert ingest["rtt_ms"] == {"used": 0, "dropped": {"nan": len(kept)}}  # no ping test ran


def test_records_that_feed_no_value_are_an_error(tmp_path: Path) -> None:
    held = read_gnettrack(HELDOUT, network_id="ie-b-lte")
    source = tmp_path / "src"
    source.mkdir()
    held[["timestamp", "lat", "lon", "network_id", "rtt_ms"]].to_parquet(source / "ping.parquet")
    ctx = LayerContext(source_dir=source, built_dir=tmp_path / "built", bbox=(-9, 51, -8, 52))
    spec = {"format": "records", "files": ["ping.parquet"]}
    with pytest.raises(InvalidInputError, match=r"ie-b-lte: the records of ping\.parquet feed no"):
        prepare_layer(network("ie-b-lte"), spec, ctx)
