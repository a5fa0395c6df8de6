"""PNG pictures: exact size, not blank, deterministic, the right things drawn."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from commap.errors import InvalidInputError
from commap.map.comm_map import CommMap
from commap.out import plot
from commap.out.route_report import compare_trace
from commap.out.style import CLASSES, DROP_RISK_COLOR, network_colors
from commap.out.timeline import RouteTimeline, timeline_from_plan
from commap.plan import plan_corridor
from commap.radio.measurements import read_gnettrack
from tests.support.paths import TEST_DATA

ORIGIN = (1.5218, 42.5063)  # Andorra la Vella
DESTINATION = (1.7330, 42.5430)  # Pas de la Casa
SIZE = (900, 600)


@pytest.fixture(scope="module")
def timeline(andorra: CommMap) -> RouteTimeline:
    corridor = andorra.corridor(andorra.routes(ORIGIN, DESTINATION)[0])
    matrix = andorra.quality(corridor)
    plan = plan_corridor(corridor, matrix, andorra.catalogue, app="infotainment")
    return timeline_from_plan(plan, corridor=corridor, matrix=matrix)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR)."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(mpimg.imread(path))[:, :, :3]


def share_near(px: np.ndarray, hex_color: str, tol: float = 0.06) -> float:
    """Share of pixels within ``tol`` (0..1 per channel) of a colour."""
    rgb = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return float((np.abs(px - rgb).max(axis=2) < tol).mean())


def assert_not_blank(path: Path, min_colors: int = 40) -> None:
    px = pixels(path)
    assert px.std() > 0.05
    # many distinct colours: lines, text, legends (a blank or one-colour frame has a handful)
    quantised = (px * 31).astype(np.int32)
    codes = quantised[..., 0] * 1024 + quantised[..., 1] * 32 + quantised[..., 2]
    assert np.unique(codes).size > min_colors


def test_route_map(andorra: CommMap, timeline: RouteTimeline, tmp_path: Path) -> None:
    out = plot.plot_route_map(andorra, timeline, tmp_path / "map.png", size_px=SIZE)
    assert png_size(out) == SIZE
    assert_not_blank(out)
    px = pixels(out)
    colors = network_colors(timeline.matrix.network_ids)
    # the serving networks are drawn in their colours, the tunnel as a drop-risk stretch
    for nid in set(timeline.serving):  # a short stretch is a few dozen pixels of line
        assert share_near(px, colors[nid]) > 0.0001, nid
    # drop risk: the red drawn at 45 % over the map background (the Envalira tunnel)
    red = np.array([int(DROP_RISK_COLOR[i : i + 2], 16) for i in (1, 3, 5)])
    background = np.array([0xF4, 0xF2, 0xEE])
    blend = 0.45 * red + 0.55 * background
    assert share_near(px, "#" + "".join(f"{round(float(v)):02x}" for v in blend)) > 0.0005


def test_strip_chart(timeline: RouteTimeline, tmp_path: Path) -> None:
    out = plot.plot_strip(timeline, tmp_path / "strip.png", size_px=SIZE)
    assert png_size(out) == SIZE
    assert_not_blank(out)
    colors = network_colors(timeline.matrix.network_ids)
    main = max(set(timeline.serving), key=timeline.serving.count)
    # the serving band is a large coloured area in the main network's colour
    assert share_near(pixels(out), colors[main]) > 0.02


def test_coverage_small_multiples(
    andorra: CommMap, timeline: RouteTimeline, tmp_path: Path
) -> None:
    out = plot.plot_coverage(
        andorra,
        tmp_path / "coverage.png",
        network_ids=["ad-lte", "es-lte", "starlink"],
        spacing_m=1000.0,
        timeline=timeline,
        size_px=(1200, 600),
    )
    assert png_size(out) == (1200, 600)
    assert_not_blank(out)


def test_coverage_legend_keeps_clear_of_the_attribution(andorra: CommMap, tmp_path: Path) -> None:
    # every network: seven panels and a two-row legend, the case where it ran into the footer
    out = plot.plot_coverage(andorra, tmp_path / "coverage.png", spacing_m=1000.0)
    px = pixels(out)
    footer = px[-int(0.022 * px.shape[0]) :]  # the strip kept for the attribution
    classes = [*CLASSES["sinr_db"], *CLASSES["elevation_deg"]]
    # the coloured classes (the grey ones look like the footer's antialiased grey text)
    legend_colours = [c.color for c in classes if c.color != "#595959"]
    assert all(share_near(footer, colour, tol=0.02) == 0 for colour in legend_colours)
    assert share_near(footer, "#444444", tol=0.1) > 0  # the attribution is there


def test_pictures_are_deterministic(
    andorra: CommMap, timeline: RouteTimeline, tmp_path: Path
) -> None:
    a = plot.plot_strip(timeline, tmp_path / "a.png", size_px=SIZE).read_bytes()
    b = plot.plot_strip(timeline, tmp_path / "b.png", size_px=SIZE).read_bytes()
    assert a == b
    assert b"Software" not in a[:200]  # no version tag that changes with matplotlib


def test_evaluation_chart(tmp_path: Path) -> None:
    results = {
        "a3_default": {"drops_per_100km": 4.0, "handovers_per_km": 1.2, "outage_share": 0.03},
        "plan": {"drops_per_100km": 1.5, "handovers_per_km": 0.4, "outage_share": 0.01},
    }
    out = plot.plot_evaluation(results, tmp_path / "eval.png", size_px=SIZE)
    assert png_size(out) == SIZE
    assert_not_blank(out, min_colors=20)  # flat bars: few colours, but text and two palettes
    assert share_near(pixels(out), network_colors(list(results))["plan"]) > 0.01
    with pytest.raises(InvalidInputError, match="has no metric"):
        plot.plot_evaluation({"x": {"a": 1.0}}, tmp_path / "e.png", metrics=[("b", "B")])


def test_trace_comparison(cork: CommMap, tmp_path: Path) -> None:
    trace = read_gnettrack(
        TEST_DATA / "measured" / "ucc5g_cork_heldout.zip",
        network_id="ie-b-lte",
        network_modes=["LTE", "5G"],
    )
    comparison = compare_trace(cork, trace)
    out = plot.plot_trace_comparison(comparison, tmp_path / "cmp.png", size_px=SIZE)
    assert png_size(out) == SIZE
    assert_not_blank(out)


@pytest.mark.parametrize(
    ("name", "size", "match"),
    [("x.jpg", SIZE, r"\.png"), ("x.png", (50, 600), "size_px")],
)
def test_bad_requests(
    timeline: RouteTimeline, tmp_path: Path, name: str, size: tuple[int, int], match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        plot.plot_strip(timeline, tmp_path / name, size_px=size)
    assert list(tmp_path.iterdir()) == []


def test_coverage_rejects_unknown_metric(andorra: CommMap, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="metric"):
        plot.plot_coverage(andorra, tmp_path / "c.png", metric="cqi")


def test_strip_chart_draws_unknown_stretches_apart(cork: CommMap, tmp_path: Path) -> None:
    from commap.out.style import UNKNOWN_COLOR
    from commap.service.planning import PlanRequest, plan_route
    from tests.support.routes import cork_drive_with_blind_leg

    result = plan_route(cork, PlanRequest(route=cork_drive_with_blind_leg()))
    blind = timeline_from_plan(result)
    assert blind.matrix.unknown is not None and blind.matrix.unknown.any()
    out = plot.plot_strip(blind, tmp_path / "strip.png", size_px=SIZE)
    assert share_near(pixels(out), UNKNOWN_COLOR) > 0.001
    # the drive alone (no unknown stretch) has none of that colour
    known = timeline_from_plan(
        plan_route(cork, PlanRequest(route=cork_drive_with_blind_leg(leg_points=0)))
    )
    assert known.matrix.unknown is not None and not known.matrix.unknown.any()
    out = plot.plot_strip(known, tmp_path / "known.png", size_px=SIZE)
    assert share_near(pixels(out), UNKNOWN_COLOR) < 0.0001
