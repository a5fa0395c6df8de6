"""Real traces as truth: A3 on the Cork drive test, bridges vs Starlink outages on the Autobahn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from commap.errors import InvalidInputError
from commap.out.evaluation_report import plot_cork_replay, plot_starlink_bridges
from commap.sim.a3 import A3Params
from commap.sim.replay import (
    RealTraces,
    calibrate_a3,
    cork_traces,
    match_events,
    read_autobahn_bridges,
    read_autobahn_throughput,
    replay_cork,
    starlink_bridges,
)
from tests.support.paths import MAPS, REPO, TEST_DATA

HELDOUT = TEST_DATA / "measured" / "ucc5g_cork_heldout.zip"
CORK_REFERENCE = MAPS / "cork" / "data" / ("ucc5g_cork_driving.zip")
THROUGHPUT = TEST_DATA / "starlink_autobahn" / "throughput.zip"
BRIDGES = TEST_DATA / "starlink_autobahn" / "Bridges.zip"


@pytest.fixture(scope="module")
def autobahn():  # type: ignore[no-untyped-def]
    return starlink_bridges(THROUGHPUT, BRIDGES)


def test_autobahn_files_read() -> None:
    run = read_autobahn_throughput(THROUGHPUT)
    assert len(run) == 4860  # 4,861 rows, one duplicated second
    assert (np.diff(run["t_s"]) > 0).all()
    assert int((run["download_mbps"] < 0.1).sum()) == 46
    assert len(read_autobahn_bridges(BRIDGES)) == 99


def test_bridges_vs_zero_throughput(autobahn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = autobahn
    (bz, bn), (oz, on) = r.contingency
    assert bz + bn + oz + on == int(np.isfinite(r.download_mbps).sum())
    assert bz + oz == 46  # every measured zero second is in the table
    assert r.passages >= 60  # most of the 99 bridges lie on logged stretches
    # at motorway speed a bridge rarely costs a whole second of throughput ...
    assert r.precision < 0.25
    # ... but a good part of the outages happen at bridges, and the downlink dips there
    assert 0.2 <= r.recall <= 0.8
    assert r.dip_share_blocked > 2.0 * r.dip_share_open
    png = plot_starlink_bridges(r, tmp_path / "starlink.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cork_a3_replay_against_real_cell_changes(tmp_path: Path) -> None:
    default = replay_cork(HELDOUT, CORK_REFERENCE)
    assert default.real_changes.size == 56  # serving-cell changes of the held-out trace
    assert 0.5 * 56 <= default.predicted_changes.size <= 1.5 * 56
    assert default.matched >= 0.3 * 56
    assert default.mean_candidates > 1.5  # reference traces give neighbours most of the way
    eager = replay_cork(HELDOUT, CORK_REFERENCE, params=A3Params(hysteresis_db=0.0, ttt_s=0.0))
    lazy = replay_cork(HELDOUT, CORK_REFERENCE, params=A3Params(hysteresis_db=6.0, ttt_s=1.024))
    assert (
        eager.predicted_changes.size > default.predicted_changes.size > lazy.predicted_changes.size
    )
    png = plot_cork_replay(default, tmp_path / "cork.png")
    assert png.stat().st_size > 10_000


def test_a3_calibrated_on_one_month_and_scored_on_the_other() -> None:
    traces = cork_traces([HELDOUT, CORK_REFERENCE])
    assert len(traces) == 9  # every shipped Cork drive, each against the eight others
    eager, default = A3Params(hysteresis_db=0.0, ttt_s=0.0), A3Params()
    cal = calibrate_a3(traces, grid=(eager, default))
    folds = {f.held_out: f for f in cal.folds}
    assert set(folds) == {"2019-11", "2019-12"}
    assert len(folds["2019-11"].traces) == 6 and len(folds["2019-12"].traces) == 3
    assert not set(folds["2019-11"].traces) & set(folds["2019-12"].traces)
    for fold in cal.folds:
        assert fold.chosen in (eager, default)
        matched, predicted, real = fold.counts
        assert 0 < matched <= min(predicted, real)
        if fold.chosen == default:  # the default's held-out figures are the chosen ones
            assert fold.counts == fold.default_counts
    # the eager setting predicts far more changes than happen: F1 on the other month picks
    # the 3GPP default, and on real drives it finds about half the changes, half right
    assert all(f.chosen == default for f in cal.folds)
    precision, recall = cal.pooled()
    assert 0.35 <= precision <= 0.75 and 0.35 <= recall <= 0.75
    text = cal.markdown()
    assert "within 5 s and 100 m" in text and "never on the drives scored" in text
    assert RealTraces.in_repository(REPO).cork_trace == HELDOUT
    with pytest.raises(InvalidInputError, match="two groups"):
        calibrate_a3(traces, groups={"all": [t.name for t in traces]}, grid=(default,))


def test_a3_changes_match_in_time_and_place() -> None:
    near = replay_cork(HELDOUT, CORK_REFERENCE)
    anywhere = replay_cork(HELDOUT, CORK_REFERENCE, tolerance_m=float("inf"))
    assert near.tolerance_m == 100.0 and near.matched <= anywhere.matched


def test_match_events_is_one_to_one() -> None:
    assert match_events(np.array([1.0, 2.0]), np.array([1.5]), 1.0) == 1
    assert match_events(np.array([1.0, 2.0]), np.array([1.2, 2.2]), 0.5) == 2
    assert match_events(np.array([1.0]), np.array([10.0]), 5.0) == 0


def test_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InvalidInputError, match=r"cannot read throughput\.csv"):
        read_autobahn_throughput(bad)
    with pytest.raises(InvalidInputError, match="no trace"):
        replay_cork(HELDOUT, CORK_REFERENCE, trace="B_nope")
