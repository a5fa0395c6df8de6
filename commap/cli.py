"""The ``commap`` command line (typer). The only module that imports typer.

Every command reports a :class:`commap.errors.CommapError` as one readable line on stderr and
exits with status 2 (bad input) or 1 (anything else the library refused).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from commap.errors import CommapError, InvalidInputError
from commap.quality import QOUT_SINR_DB, Provenance

app = typer.Typer(
    name="commap",
    help="Communication maps for connected vehicles, and where to switch networks along a route.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

MapOpt = Annotated[str, typer.Option("--map", "-m", help="Map name under maps/ or a built map directory.")]


def _friendly(func: F) -> F:
    """Turn library errors into one line on stderr and a non-zero exit status."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InvalidInputError as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
        except CommapError as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def parse_latlon(text: str, *, field: str) -> tuple[float, float]:
    """``"LAT,LON"`` -> ``(lon, lat)``; raises InvalidInputError naming ``field``."""
    parts = text.replace(" ", "").split(",")
    try:
        lat, lon = (float(p) for p in parts)
    except ValueError:
        raise InvalidInputError(f"{field}: expected LAT,LON in degrees, got {text!r}", field=field) from None
    if not (np.isfinite(lat) and np.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
        raise InvalidInputError(f"{field}: {text!r} is not a valid latitude,longitude", field=field)
    return (lon, lat)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False) -> None:
    """commap command line."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command("build-map")
@_friendly
def build_map_cmd(
    spec: Annotated[Path, typer.Argument(help="Map spec (map.toml).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Built map directory.")],
) -> None:
    """Build a map from its spec: roads, terrain, layers, manifest."""
    from commap.comm_map import build_map

    with console.status("building map") as status:

        def progress(message: str) -> None:
            status.update(message)
            console.log(message)

        build_map(spec, out, progress=progress)
    console.print(f"map built in [bold]{out}[/]")


@app.command()
@_friendly
def coverage(
    map_name: MapOpt = "andorra",
    at: Annotated[str, typer.Option("--at", help="LAT,LON")] = "",
    time: Annotated[str | None, typer.Option("--time", help="ISO 8601 or epoch s")] = None,
) -> None:
    """Quality of every network at one point."""
    from commap.comm_map import CommMap
    from commap.timeutil import format_time, parse_time

    lon, lat = parse_latlon(at, field="--at")
    cmap = CommMap.load(map_name)
    t_s = cmap.default_departure_s if time is None else parse_time(time, field="--time")
    qm = cmap.quality_at([lon], [lat], [t_s])
    table = Table(title=f"{cmap.name} at {lat:.5f}, {lon:.5f}, {format_time(t_s)}")
    for col in ("network", "kind", "rsrp dBm", "sinr dB", "elevation deg", "usable", "provenance"):
        table.add_column(col)
    for j, nid in enumerate(qm.network_ids):
        net = cmap.catalogue[nid]
        table.add_row(
            nid,
            net.kind.value,
            _fmt(qm.rsrp_dbm[0, j]),
            _fmt(qm.sinr_db[0, j]),
            _fmt(qm.elevation_deg[0, j]),
            "yes" if qm.sinr_db[0, j] >= QOUT_SINR_DB else "no",
            Provenance(int(qm.provenance[0, j])).name.lower(),
        )
    console.print(table)


def _fmt(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.1f}"


@app.command()
@_friendly
def route(
    map_name: MapOpt = "andorra",
    origin: Annotated[str, typer.Option("--from", help="LAT,LON")] = "",
    destination: Annotated[str, typer.Option("--to", help="LAT,LON")] = "",
    alternatives: Annotated[int, typer.Option("--alternatives", "-k", min=1, max=10)] = 1,
    depart: Annotated[str | None, typer.Option("--depart", help="ISO 8601 departure")] = None,
) -> None:
    """Route summary and per-network coverage share along it."""
    from commap.comm_map import CommMap
    from commap.timeutil import format_time, parse_time

    o = parse_latlon(origin, field="--from")
    d = parse_latlon(destination, field="--to")
    cmap = CommMap.load(map_name)
    departure_s = cmap.default_departure_s if depart is None else parse_time(depart, field="--depart")
    for i, r in enumerate(cmap.routes(o, d, k=alternatives)):
        corridor = cmap.corridor(r, departure_s=departure_s)
        qm = cmap.quality(corridor)
        console.print(
            f"[bold]route {i + 1}[/]: {corridor.total_length_m / 1000:.1f} km, "
            f"{corridor.total_duration_s / 60:.1f} min, {len(corridor)} segments of "
            f"{cmap.segment_m:.0f} m, tunnels {corridor.length_m[corridor.in_tunnel].sum() / 1000:.1f} km, "
            f"departure {format_time(departure_s)}"
        )
        table = Table()
        for col in ("network", "kind", "coverage share", "measured share", "median sinr dB"):
            table.add_column(col)
        weights = corridor.length_m / max(corridor.total_length_m, 1e-9)
        for j, nid in enumerate(qm.network_ids):
            usable = qm.sinr_db[:, j] >= QOUT_SINR_DB
            measured = qm.provenance[:, j] == Provenance.MEASURED
            table.add_row(
                nid,
                cmap.catalogue[nid].kind.value,
                f"{100 * float(weights[usable].sum()):.0f} %",
                f"{100 * float(weights[measured].sum()):.0f} %",
                _fmt(float(np.median(qm.sinr_db[:, j]))),
            )
        any_usable = (qm.sinr_db >= QOUT_SINR_DB).any(axis=1)
        table.caption = f"no network usable on {100 * float(weights[~any_usable].sum()):.1f} % of the route"
        console.print(table)


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(app())
