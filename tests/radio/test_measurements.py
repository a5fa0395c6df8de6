"""Measurement records, G-NetTrack drive tests and the Indianapolis grid (real data)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from commap.errors import InvalidInputError
from commap.radio.measurements import (
    KEY_COLUMNS,
    KPI_COLUMNS,
    QUALITY_COLUMNS,
    RECORD_COLUMNS,
    STAT_COLUMNS,
    append_records,
    read_gnettrack,
    read_indianapolis_grid,
    read_records_csv,
    read_records_dir,
    read_records_parquet,
    sinr_from_throughput,
    validate_records,
    write_records_csv,
)
from tests.support.paths import MAPS, TEST_DATA

HELDOUT = TEST_DATA / "measured" / "ucc5g_cork_heldout.zip"
CORK_TRACES = MAPS / "cork" / "data" / "ucc5g_cork_driving.zip"
INDY = MAPS / "indianapolis" / "data"
# the published common area of the Indianapolis campaign (README of the data bundle)
INDY_LAT = (39.7655, 39.781)
INDY_LON = (-86.1675, -86.145)
HEADER = "timestamp,lat,lon,network_id,rsrp_dbm,sinr_db"


def indy_files(prefix: str) -> list[Path]:
    return sorted(INDY.glob(f"{prefix}_*.csv.gz"))


@pytest.fixture(scope="module")
def heldout() -> pd.DataFrame:
    return read_gnettrack(HELDOUT, network_id="ie-b-lte")


def write(tmp_path: Path, text: str, name: str = "r.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- schema -------------------------------------------------------------------------------------
def test_schema_is_data_with_units() -> None:
    by_name = {c.name: c for c in RECORD_COLUMNS}
    assert KEY_COLUMNS == ("timestamp", "lat", "lon", "network_id")
    assert QUALITY_COLUMNS == (
        "rsrp_dbm",
        "rsrq_db",
        "sinr_db",
        "throughput_dl_mbps",
        "throughput_ul_mbps",
        "rtt_ms",
        "connected",
    )
    assert QUALITY_COLUMNS[:-1] == KPI_COLUMNS
    assert by_name["rsrp_dbm"].unit == "dBm" and by_name["throughput_ul_mbps"].unit == "Mbit/s"
    assert by_name["rtt_ms"].unit == "ms" and by_name["drive_id"].role == "extra"
    assert by_name["timestamp"].dtype == "datetime64[ns, UTC]"
    assert (by_name["lat"].min_value, by_name["lat"].max_value) == (-90.0, 90.0)


# --- commap record CSV --------------------------------------------------------------------------
def test_round_trip_of_real_records(tmp_path: Path, heldout: pd.DataFrame) -> None:
    records = heldout.iloc[:300].copy()
    records.loc[records.index[:5], "sinr_db"] = np.nan  # missing values survive as missing
    records.loc[records.index[:3], "connected"] = pd.NA
    path = write_records_csv(records, tmp_path / "out" / "records.csv")
    back = read_records_csv(path)
    pd.testing.assert_frame_equal(back, records.reset_index(drop=True))
    assert back["timestamp"].dt.tz is not None
    assert not list(tmp_path.glob("out/.*tmp*"))  # no temp file left behind


def every_field(heldout: pd.DataFrame) -> pd.DataFrame:
    """Real records with every schema column filled (rtt from the trace's time steps)."""
    records = heldout.iloc[:200].copy()
    records["rtt_ms"] = np.linspace(20.0, 80.0, len(records))  # the trace ran no ping test
    records.loc[records.index[:4], "rsrq_db"] = np.nan
    records.loc[records.index[:2], "connected"] = pd.NA
    assert [c.name for c in RECORD_COLUMNS] == list(records.columns)
    return records.reset_index(drop=True)


def test_every_field_round_trips_through_csv_and_parquet(
    tmp_path: Path, heldout: pd.DataFrame
) -> None:
    records = every_field(heldout)
    csv = read_records_csv(write_records_csv(records, tmp_path / "r.csv"))
    pd.testing.assert_frame_equal(csv, records)
    records.to_parquet(tmp_path / "r.parquet")
    pd.testing.assert_frame_equal(read_records_parquet(tmp_path / "r.parquet"), records)
    both = read_records_dir(tmp_path)  # a directory of either
    pd.testing.assert_frame_equal(both, pd.concat([records, records], ignore_index=True))


def test_old_column_names_still_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "timestamp,lat,lon,network_id,throughput_mbps,trace\n2020-01-01T00:00:00Z,1,2,x,7.5,d1\n",
    )
    df = read_records_csv(path)
    assert df["throughput_dl_mbps"].tolist() == [7.5] and df["drive_id"].tolist() == ["d1"]
    twice = write(
        tmp_path,
        "timestamp,lat,lon,network_id,throughput_mbps,throughput_dl_mbps\n"
        "2020-01-01T00:00:00Z,1,2,x,7.5,7.5\n",
        "twice.csv",
    )
    with pytest.raises(InvalidInputError, match="'throughput_dl_mbps' is given twice"):
        read_records_csv(twice)


def test_parquet_errors_name_the_file(tmp_path: Path) -> None:
    bad = write(tmp_path, "not parquet", "bad.parquet")
    with pytest.raises(InvalidInputError, match=r"bad\.parquet: not a readable Parquet file"):
        read_records_parquet(bad)
    frame = pd.DataFrame(
        {
            "timestamp": ["2020-01-01T00:00:00Z"],
            "lat": [1.0],
            "lon": [2.0],
            "network_id": ["x"],
            "rsrq_db": [-45.0],
        }
    )
    frame.to_parquet(tmp_path / "range.parquet")
    with pytest.raises(InvalidInputError, match="row 0, column 'rsrq_db': -45 is outside"):
        read_records_parquet(tmp_path / "range.parquet")


def test_read_minimal_file_and_naive_time_is_utc(tmp_path: Path) -> None:
    path = write(
        tmp_path, "timestamp,lat,lon,network_id,connected\n2020-01-01T10:00:00,1,2,x,yes\n"
    )
    df = read_records_csv(path)
    assert df["timestamp"].iloc[0] == pd.Timestamp("2020-01-01T10:00:00Z")
    assert df["connected"].tolist() == [True]
    assert list(df.columns) == ["timestamp", "lat", "lon", "network_id", "connected"]


@pytest.mark.parametrize(
    ("row", "line", "column", "problem"),
    [
        ("2020-01-01T00:00:00Z,NaN,-8.4,x,-90,5", 3, "lat", "missing"),
        ("2020-01-01T00:00:00Z,,-8.4,x,-90,5", 3, "lat", "missing"),
        ("2020-01-01T00:00:00Z,91,-8.4,x,-90,5", 3, "lat", "outside [-90, 90]"),
        ("2020-01-01T00:00:00Z,51.9,-181,x,-90,5", 3, "lon", "outside [-180, 180]"),
        ("2020-01-01T00:00:00Z,51.9,-8.4,x,strong,5", 3, "rsrp_dbm", "'strong' is not a number"),
        ("2020-01-01T00:00:00Z,51.9,-8.4,x,-90,inf", 3, "sinr_db", "not finite"),
        ("2020-01-01T00:00:00Z,51.9,-8.4,x,-10,5", 3, "rsrp_dbm", "outside [-160, -20]"),
        ("yesterday,51.9,-8.4,x,-90,5", 3, "timestamp", "not an ISO 8601 time"),
        ("2020-01-01T00:00:00Z,51.9,-8.4,,-90,5", 3, "network_id", "missing"),
    ],
)
def test_bad_row_names_file_line_and_column(
    tmp_path: Path, row: str, line: int, column: str, problem: str
) -> None:
    good = "2020-01-01T00:00:00Z,51.9,-8.4,x,-90,5"
    path = write(tmp_path, f"{HEADER}\n{good}\n{row}\n")
    with pytest.raises(InvalidInputError) as info:
        read_records_csv(path)
    message = str(info.value)
    assert str(path) in message
    assert f"line {line}, column {column!r}" in message
    assert problem in message
    assert info.value.field == column


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "file is empty"),
        (f"{HEADER}\n", "holds no records"),
        ("timestamp,lat,lon,network_id\n2020-01-01T00:00:00Z,1,2,x\n", "quality column"),
        ("timestamp,lat,network_id,sinr_db\n2020-01-01T00:00:00Z,1,x,2\n", "'lon' is missing"),
        (f"{HEADER},colour\n2020-01-01T00:00:00Z,1,2,x,-90,5,red\n", "unknown column 'colour'"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(InvalidInputError, match=problem):
        read_records_csv(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_records_csv(tmp_path / "nope.csv")


def test_unknown_network_is_optional_check(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\n2020-01-01T00:00:00Z,51.9,-8.4,ie-b-lte,-90,5\n")
    assert len(read_records_csv(path)) == 1
    with pytest.raises(InvalidInputError, match=r"line 2, column 'network_id'.*unknown network"):
        read_records_csv(path, known_networks={"starlink"})


def test_dataframe_errors_name_the_row() -> None:
    df = pd.DataFrame(
        {
            "timestamp": ["2020-01-01T00:00:00Z"] * 2,
            "lat": [51.9, np.nan],
            "lon": [-8.4, -8.4],
            "network_id": ["x", "x"],
            "rsrp_dbm": [-90.0, -91.0],
        }
    )
    with pytest.raises(InvalidInputError, match=r"request: row 1, column 'lat'"):
        validate_records(df, source="request")


def test_append_records_writes_new_durable_parts(tmp_path: Path, heldout: pd.DataFrame) -> None:
    fleet = tmp_path / "fleet"
    first = append_records(heldout.iloc[:100], fleet)
    second = append_records(heldout.iloc[100:250], fleet)
    assert first != second and first.parent == fleet and second.parent == fleet
    assert sorted(p.name for p in fleet.iterdir()) == sorted([first.name, second.name])
    back = read_records_dir(fleet)
    assert len(back) == 250
    assert set(back["drive_id"]) == {"B_2019.12.03_07.29.22"}
    with pytest.raises(InvalidInputError, match="holds no records"):
        append_records(heldout.iloc[:0], fleet)
    with pytest.raises(InvalidInputError, match="unknown network"):
        append_records(heldout.iloc[:5], fleet, known_networks={"other"})
    assert len(list(fleet.iterdir())) == 2  # failed batches leave nothing behind


# --- G-NetTrack ---------------------------------------------------------------------------------
def test_gnettrack_heldout_trace(heldout: pd.DataFrame) -> None:
    assert len(heldout) > 1500
    assert heldout["timestamp"].dt.tz is not None
    # the trace started at 2019.12.03_07.29.22 local time; Ireland is on UTC in December
    assert heldout["timestamp"].iloc[0] == pd.Timestamp("2019-12-03T07:29:22Z")
    assert not heldout["timestamp"].duplicated().any()
    assert heldout["timestamp"].is_monotonic_increasing
    assert (heldout["rsrp_dbm"] >= -140).all()
    assert heldout["network_id"].eq("ie-b-lte").all()
    assert heldout["cell_id"].notna().all() and heldout["cell_id"].nunique() > 10
    assert set(heldout["network_mode"]) <= {"5G", "LTE", "HSPA+", "HSUPA", "HSDPA", "UMTS"}
    lat0, lat1 = 51.8723, 51.9556
    assert heldout["lat"].between(lat0, lat1).all()


def test_gnettrack_units_and_dedup_against_raw_csv(heldout: pd.DataFrame) -> None:
    with zipfile.ZipFile(HELDOUT) as archive:
        (name,) = archive.namelist()
        raw = pd.read_csv(archive.open(name), na_values="-")
    assert len(heldout) == raw["Timestamp"].nunique()  # one row per second kept
    last = raw.drop_duplicates("Timestamp", keep="last").reset_index(drop=True)
    np.testing.assert_allclose(heldout["throughput_dl_mbps"], last["DL_bitrate"] / 1000.0)
    np.testing.assert_array_equal(heldout["rsrp_dbm"], last["RSRP"])
    np.testing.assert_array_equal(heldout["rsrq_db"], last["RSRQ"])
    np.testing.assert_allclose(heldout["throughput_ul_mbps"], last["UL_bitrate"] / 1000.0)
    assert heldout["rtt_ms"].isna().all() and last["PINGAVG"].isna().all()  # no ping test ran
    assert heldout["drive_id"].eq(Path(name).stem).all()
    np.testing.assert_array_equal(heldout["sinr_db"].isna(), last["SNR"].isna())


def test_gnettrack_plain_csv_sentinels_and_modes(tmp_path: Path) -> None:
    with zipfile.ZipFile(HELDOUT) as archive:
        lines = archive.read(archive.namelist()[0]).decode().splitlines()
    header = lines[0].split(",")
    rsrp = header.index("RSRP")
    row = lines[1].split(",")
    row[rsrp] = "-200"  # the logger's sentinel for "no measurement"
    # rows 430-460 of the trace cover a 5G -> LTE change
    text = "\n".join([lines[0], ",".join(row), *lines[430:460]]) + "\n"
    path = write(tmp_path, text, "B_test.csv")
    everything = read_gnettrack(path, network_id="x")
    assert (everything["rsrp_dbm"] >= -140).all()
    assert everything["timestamp"].iloc[0] > pd.Timestamp("2019-12-03T07:30:00Z")  # row 1 gone
    assert set(everything["network_mode"]) == {"LTE", "5G"}
    lte = read_gnettrack(path, network_id="x", network_modes=["LTE"])
    assert set(lte["network_mode"]) == {"LTE"} and 0 < len(lte) < len(everything)
    assert set(lte["drive_id"]) == {"B_test"}
    shifted = read_gnettrack(path, network_id="x", utc_offset_h=1.0)
    assert (everything["timestamp"] - shifted["timestamp"] == pd.Timedelta(hours=1)).all()


def test_gnettrack_bad_files(tmp_path: Path) -> None:
    with zipfile.ZipFile(HELDOUT) as archive:
        lines = archive.read(archive.namelist()[0]).decode().splitlines()
    no_rsrp = "\n".join(line.replace("RSRP", "RSXP", 1) for line in lines[:5])
    with pytest.raises(InvalidInputError, match="column 'RSRP' is missing"):
        read_gnettrack(write(tmp_path, no_rsrp, "a.csv"), network_id="x")
    row = lines[3].split(",")
    row[lines[0].split(",").index("Latitude")] = "north"
    bad = "\n".join([*lines[:3], ",".join(row)])
    with pytest.raises(InvalidInputError, match=r"b.csv: line 4, column 'Latitude'"):
        read_gnettrack(write(tmp_path, bad, "b.csv"), network_id="x")
    with pytest.raises(InvalidInputError, match="file is empty"):
        read_gnettrack(write(tmp_path, "", "c.csv"), network_id="x")
    with pytest.raises(InvalidInputError, match="no usable G-NetTrack rows"):
        read_gnettrack(HELDOUT, network_id="x", network_modes=["GPRS"])


def test_gnettrack_zip_of_many_traces() -> None:
    df = read_gnettrack(CORK_TRACES, network_id="ie-b-lte", network_modes=["LTE", "5G"])
    assert df["drive_id"].nunique() == 8
    assert not df.duplicated(["drive_id", "timestamp"]).any()
    assert set(df["network_mode"]) == {"LTE", "5G"}


# --- Indianapolis grid --------------------------------------------------------------------------
@pytest.mark.parametrize("operator", ["A-R1", "T-R12", "V-R6"])
def test_grid_swapped_columns_are_fixed(operator: str) -> None:
    grid = read_indianapolis_grid(indy_files(operator))
    assert len(grid) > 300
    assert list(grid.columns) == ["lat", "lon", "sample_count", *STAT_COLUMNS]
    # every square lies inside the published area (AT&T also measured 0.0045 deg further south)
    south = INDY_LAT[0] - (0.005 if operator == "A-R1" else 0.0)
    assert grid["lat"].between(south, INDY_LAT[1]).all()
    assert grid["lon"].between(*INDY_LON).all()
    assert (grid["sample_count"] > 0).all()
    served = grid["sinr_db_median"].notna()
    assert served.mean() > 0.75
    # throughput kept, and the SINR equivalent is monotonic in it
    order = grid[served].sort_values("throughput_dl_mbps_median")
    assert order["sinr_db_median"].is_monotonic_increasing


def test_grid_rsrp_only_for_tmobile() -> None:
    tmo = read_indianapolis_grid(indy_files("T-R12"))
    att = read_indianapolis_grid(indy_files("A-R1"))
    assert att["rsrp_dbm_median"].isna().all()
    rsrp = tmo["rsrp_dbm_median"].dropna()
    assert len(rsrp) > 400 and rsrp.between(-125, -50).all()
    measured = tmo.dropna(subset=["rsrp_dbm_median"])
    assert (measured["rsrp_dbm_p10"] <= measured["rsrp_dbm_median"]).all()
    assert (measured["rsrp_dbm_median"] <= measured["rsrp_dbm_p90"]).all()
    # a square the upstream file shows: grid (39.7665 N, -86.1665 E), strongest cell -81 dBm
    square = tmo[(tmo["lat"] == 39.7665) & (tmo["lon"] == -86.1665)]
    assert square["rsrp_dbm_median"].tolist() == [-81.0]


def test_grid_wrong_swap_is_caught() -> None:
    with pytest.raises(InvalidInputError, match="swapped"):
        read_indianapolis_grid(indy_files("T-R12"), swapped=False)


def test_grid_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not a supported grid file"):
        read_indianapolis_grid([write(tmp_path, "grid_lat,grid_lon,x\n1,2,3\n")])
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_indianapolis_grid([tmp_path / "none.csv"])


def test_sinr_from_throughput_inverts_shannon() -> None:
    sinr_db = sinr_from_throughput([20.0, 40.0, np.nan], bandwidth_mhz=20.0)
    # 20 Mbit/s over 20 MHz is 1 bit/s/Hz: SINR 1 (0 dB); 2 bit/s/Hz: SINR 3 (4.8 dB)
    np.testing.assert_allclose(sinr_db[:2], [0.0, 10 * np.log10(3.0)])
    assert np.isnan(sinr_db[2])
    with pytest.raises(InvalidInputError):
        sinr_from_throughput([1.0], bandwidth_mhz=0.0)


def test_hamburg_bremen_raw_rows_become_one_lte_record_per_operator_and_second() -> None:
    from commap.radio.measurements import HAMBURG_BREMEN_NETWORKS, read_hamburg_bremen

    path = TEST_DATA / "measured_multi" / "hamburg_bremen_raw_extract.csv.gz"
    raw = pd.read_csv(path)
    records = read_hamburg_bremen(path)
    lte = raw[raw["tech"] == "Lte"]
    seconds = lte.assign(s=lte["timestamp_ms"] // 1000).groupby("mnc")["s"].nunique()
    counts = records.groupby("network_id").size()
    assert {HAMBURG_BREMEN_NETWORKS[int(str(m))]: n for m, n in seconds.items()} == counts.to_dict()
    assert set(records["network_mode"]) == {"LTE"} and records["rsrq_db"].notna().all()
    first = lte.sort_values("timestamp_ms").iloc[0]
    row = records.iloc[0]
    assert row["rsrp_dbm"] == first["rsrp_dbm"] and row["lat"] == first["lat"]
    assert row["drive_id"] == f"{first['drive']}/{first['segment']}"
