"""The ``commap`` command line (typer). The only module that imports typer.

Every command reports a :class:`commap.errors.CommapError` as one readable line on stderr and
exits with status 2 (bad input) or 1 (anything else the library refused).
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from commap.errors import CommapError, InvalidInputError, MapNotFoundError
from commap.plan import defaults

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table

# Only light modules above: ``commap --help`` and argument errors must answer at once, so the
# heavy libraries (numpy, pandas, scipy, networkx, OR-Tools) and the map code are imported inside
# the commands that use them (tests/test_cli.py checks the import set), and rich (tables,
# progress, markup) when a command first prints with it.

if TYPE_CHECKING:
    from commap.geo.corridor import Corridor
    from commap.networks import NetworkCatalogue
    from commap.radio.quality import QualityMatrix

app = typer.Typer(
    name="commap",
    help="Communication maps for connected vehicles, and where to switch networks along a route.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich costs more than the whole import
)


class _LazyConsole:
    """A rich console made on first use (importing rich costs an argument error a sixth of
    its time)."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def get(self) -> Console:
        """The console itself (made now if not yet)."""
        if self._console is None:
            from rich.console import Console

            # log lines carry their time; the source line that logged them is noise to a user
            self._console = Console(stderr=self._stderr, log_path=False)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


console: Any = _LazyConsole()
err_console: Any = _LazyConsole(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

MapOpt = Annotated[
    str, typer.Option("--map", "-m", help="Map name under maps/ or a built map directory.")
]
StaleOpt = Annotated[
    bool,
    typer.Option(
        "--allow-stale-elements",
        help="Plan even a month or more away from the satellites' orbital elements.",
    ),
]


def _say_elements(cmap: Any, t_s: Any, *, used: Any, allow_stale: bool) -> None:
    """The orbital-element epoch of each constellation, and a note when it is far off."""

    notices = cmap.check_elements(t_s, allow_stale=allow_stale, used=used)
    _say_epochs(cmap.element_epochs(), notices)


def _say_epochs(epochs: dict[str, float], notices: Any) -> None:
    from commap.timeutil import format_time

    if epochs:
        listed = ", ".join(f"{nid} {format_time(e)}" for nid, e in sorted(epochs.items()))
        err_console.print(f"orbital elements: {listed}")
    for line in notices:
        err_console.print(f"[bold yellow]note:[/] {line}")


def _say_error(message: str) -> None:
    """``error: message`` as one line on stderr (the label red on a terminal)."""
    typer.secho("error:", fg="red", bold=True, err=True, nl=False)
    typer.echo(f" {message}", err=True)


def _friendly(func: F) -> F:
    """Turn library errors into one line on stderr and a non-zero exit status."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (InvalidInputError, MapNotFoundError) as exc:  # the user's input: status 2
            _say_error(str(exc))
            raise typer.Exit(2) from None
        except CommapError as exc:
            _say_error(str(exc))
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def parse_latlon(text: str, *, field: str) -> tuple[float, float]:
    """``"LAT,LON"`` -> ``(lon, lat)``; raises InvalidInputError naming ``field``."""
    parts = text.replace(" ", "").split(",")
    try:
        lat, lon = (float(p) for p in parts)
    except ValueError:
        raise InvalidInputError(
            f"{field}: expected LAT,LON in degrees, got {text!r}", field=field
        ) from None
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
        raise InvalidInputError(f"{field}: {text!r} is not a valid latitude,longitude", field=field)
    return (lon, lat)


@app.callback()
def common_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    """commap command line."""
    handler = logging.StreamHandler()
    if verbose:  # the log's time and source help to follow a long job
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:  # only warnings show, and they are for the user: "warning: ..." as errors are
        handler.setFormatter(_UserFormatter())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


class _UserFormatter(logging.Formatter):
    """A log record as one line for the user: ``warning: <message>``."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


class _TileProgressBar:
    """A :class:`commap.progress.Progress` as a rich bar on stderr: tiles, tiles/s, ETA."""

    def __init__(self, out: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            Task,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class TileRate(ProgressColumn):
            """Tiles per second (rich's own speed column counts bytes)."""

            def render(self, task: Task) -> Text:
                speed = task.finished_speed or task.speed
                return Text("-- tiles/s" if speed is None else f"{speed:.2f} tiles/s", style="cyan")

        self.console = out
        self.bar: Progress = Progress(
            TextColumn("[bold]edge table"),
            BarColumn(),
            MofNCompleteColumn(),
            TileRate(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=out,
        )
        self.task: TaskID | None = None

    def total(self, steps: int, done: int = 0) -> None:
        # tiles of a resumed build count as done from the start, not as a burst of speed
        self.task = self.bar.add_task("tiles", total=steps, completed=done)
        self.bar.start()

    def advance(self, steps: int = 1) -> None:
        if self.task is not None:
            self.bar.advance(self.task, steps)

    def message(self, text: str) -> None:
        _log_line(self.console, text)

    def close(self) -> None:
        self.bar.stop()


def _log_line(out: Console, text: str) -> None:
    """A status line of a long job, with its time, as written: file names and spec sections
    such as ``[terrain]`` are text, not rich markup."""
    out.log(text, markup=False, highlight=False)


@app.command("build-map")
@_friendly
def build_map_cmd(
    spec: Annotated[Path, typer.Argument(help="Map spec (map.toml).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Built map directory.")],
    executor: Annotated[
        str, typer.Option("--executor", "-e", help="Where edge tiles run: serial, processes, dask.")
    ] = "serial",
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, help="Worker processes (default: CPUs).")
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Existing dask scheduler, tcp://HOST:PORT (dask only)."),
    ] = None,
) -> None:
    """Build a map from its spec: roads, terrain, layers, per-edge table, manifest."""
    from commap.map.build import build_map
    from commap.map.region import read_coverage_stats, summary_lines

    start = time.perf_counter()
    bar = _TileProgressBar(err_console.get()) if err_console.is_terminal else None
    try:
        build_map(
            spec,
            out,
            progress=bar or (lambda text: _log_line(err_console.get(), text)),
            executor=executor,
            workers=workers,
            scheduler=scheduler,
        )
    finally:
        if bar is not None:
            bar.close()
    console.print(f"map built in [bold]{out}[/] ({time.perf_counter() - start:.1f} s)")
    try:
        for line in summary_lines(read_coverage_stats(out)):
            console.print(f"  {line}")
    except InvalidInputError:  # a map without roads has no edge table to summarise
        pass


@app.command("update-elements")
@_friendly
def update_elements_cmd(
    map_name: MapOpt = "andorra",
    tle: Annotated[
        list[str] | None,
        typer.Option("--tle", help="NETWORK=FILE: fresh TLEs of a LEO network (repeat)."),
    ] = None,
) -> None:
    """Load fresh orbital elements (TLE files) into a built map, without rebuilding it."""
    from commap.map.elements import update_elements

    pairs: dict[str, str] = {}
    for item in tle or []:
        nid, sep, path = item.partition("=")
        if not sep or not nid or not path:
            raise InvalidInputError(f"--tle: expected NETWORK=FILE, got {item!r}", field="--tle")
        pairs[nid.strip()] = path.strip()
    manifest = update_elements(map_name, pairs)
    for nid in pairs:
        entry = next(e for e in manifest.networks if e.id == nid)
        console.print(f"{nid}: {entry.layer['satellites']} satellites loaded")
    _say_epochs(_epochs_of(map_name), ())


def _epochs_of(map_name: str) -> dict[str, float]:
    from commap.map.comm_map import CommMap

    return CommMap.load(map_name).element_epochs()


@app.command()
@_friendly
def coverage(
    map_name: MapOpt = "andorra",
    at: Annotated[str, typer.Option("--at", help="LAT,LON")] = "",
    time: Annotated[str | None, typer.Option("--time", help="ISO 8601 or epoch s")] = None,
    allow_stale_elements: StaleOpt = False,
) -> None:
    """Quality of every network at one point."""
    lon, lat = parse_latlon(at, field="--at")

    import numpy as np
    from rich import box
    from rich.table import Table

    from commap.map.comm_map import CommMap
    from commap.out.style import PROVENANCE_NAMES, UNKNOWN
    from commap.radio.quality import (
        NO_SATELLITE_ELEVATION_DEG,
        NO_SIGNAL_RSRP_DBM,
        NO_SIGNAL_SINR_DB,
        QOUT_SINR_DB,
        USABLE_SINR_DB,
        Provenance,
    )
    from commap.timeutil import format_time, parse_time

    cmap = CommMap.load(map_name)
    cmap.check_inside([lon], [lat], field="--at")  # the option the user gave, named
    t_s = cmap.default_departure_s if time is None else parse_time(time, field="--time")
    cmap.check_elements(t_s, allow_stale=allow_stale_elements, used=())
    qm = cmap.quality_at([lon], [lat], [t_s])
    # a constellation out of view here needs no warning about its elements
    in_view = [nid for j, nid in enumerate(qm.network_ids) if qm.sinr_db[0, j] >= QOUT_SINR_DB]
    _say_elements(cmap, t_s, used=in_view, allow_stale=allow_stale_elements)
    table = Table(
        title=f"{cmap.name} at {lat:.5f}, {lon:.5f}, {format_time(t_s)}",
        caption=f"usable: SINR >= {USABLE_SINR_DB:g} dB; none: no signal; "
        "unknown: no source covers the point",
        box=box.SIMPLE_HEAD,
        show_edge=False,
    )
    for col in ("network", "kind", "RSRP dBm", "SINR dB", "elev deg", "usable", "source"):
        table.add_column(col, no_wrap=True)
    unknown = np.asarray(qm.unknown, dtype=bool).reshape(qm.shape)
    for j, nid in enumerate(qm.network_ids):
        # no source, or no data near (the learned map's prior): not a value to read as coverage
        known = int(qm.provenance[0, j]) != Provenance.NONE and not bool(unknown[0, j])
        sinr = float(qm.sinr_db[0, j])
        table.add_row(
            nid,
            cmap.catalogue[nid].kind.value,
            _fmt(qm.rsrp_dbm[0, j], none_at=NO_SIGNAL_RSRP_DBM, known=known),
            _fmt(sinr, none_at=NO_SIGNAL_SINR_DB, known=known),
            _fmt(qm.elevation_deg[0, j], none_at=NO_SATELLITE_ELEVATION_DEG, known=known),
            ("yes" if sinr >= USABLE_SINR_DB else "no") if known else UNKNOWN,
            PROVENANCE_NAMES[int(qm.provenance[0, j])] if known else UNKNOWN,
        )
    console.print(table)


_ROUTE_HELP = (
    "Route file (.csv lat,lon[,timestamp], .gpx, .geojson LineString, .polyline) "
    "or an encoded polyline"
)


def _fmt(value: float, *, none_at: float = -math.inf, known: bool = True) -> str:
    """A value for a table: ``-`` where it does not apply (NaN), ``unknown`` without data,
    ``none`` at the no-signal value, else one decimal."""
    if math.isnan(value):
        return "-"
    if not known:
        return "unknown"
    return "none" if value <= none_at else f"{value:.1f}"


@app.command()
@_friendly
def route(
    map_name: MapOpt = "andorra",
    origin: Annotated[str, typer.Option("--from", help="LAT,LON")] = "",
    destination: Annotated[str, typer.Option("--to", help="LAT,LON")] = "",
    alternatives: Annotated[
        int, typer.Option("--alternatives", "-k", min=1, max=defaults.MAX_ALTERNATIVES)
    ] = defaults.ALTERNATIVES,
    depart: Annotated[str | None, typer.Option("--depart", help="ISO 8601 departure")] = None,
    route_file: Annotated[str | None, typer.Option("--route", help=_ROUTE_HELP)] = None,
    allow_stale_elements: StaleOpt = False,
) -> None:
    """Route summary and per-network coverage share along it."""
    if route_file is not None and (origin or destination):
        raise InvalidInputError("give --route FILE or --from/--to, not both", field="--route")
    # bad coordinates are reported before the map code is imported
    o = parse_latlon(origin, field="--from") if route_file is None else (0.0, 0.0)
    d = parse_latlon(destination, field="--to") if route_file is None else (0.0, 0.0)

    import numpy as np

    from commap.geo.routefile import load_route
    from commap.map.comm_map import CommMap
    from commap.radio.quality import QOUT_SINR_DB
    from commap.timeutil import format_time, parse_time

    given = [load_route(route_file)] if route_file is not None else None
    cmap = CommMap.load(map_name)
    departure_s = (
        cmap.default_departure_s if depart is None else parse_time(depart, field="--depart")
    )
    if given is not None and depart is None and given[0].t_s is not None:
        departure_s = float(given[0].t_s[0])  # a recorded drive keeps its own times
    for i, r in enumerate(given or cmap.routes(o, d, k=alternatives)):
        corridor = cmap.corridor(r, departure_s=departure_s)
        cmap.check_elements(corridor.t_s, allow_stale=allow_stale_elements, used=())
        qm = cmap.quality(corridor)
        if i == 0:
            in_view = np.flatnonzero((qm.sinr_db >= QOUT_SINR_DB).any(axis=0)).tolist()
            used = [qm.network_ids[j] for j in in_view]
            _say_elements(cmap, corridor.t_s, used=used, allow_stale=allow_stale_elements)
        console.print(
            f"[bold]route {i + 1}[/]: {corridor.total_length_m / 1000:.1f} km, "
            f"{corridor.total_duration_s / 60:.1f} min, {len(corridor)} segments of "
            f"{cmap.segment_m:.0f} m, {_tunnel_summary(corridor, qm)}, "
            f"departure {format_time(departure_s)}"
        )
        table = route_coverage_table(corridor, qm, cmap.catalogue)
        console.print(table)


def _tunnel_summary(corridor: Corridor, qm: QualityMatrix) -> str:
    """``tunnels 3.1 km`` and which networks are usable inside them (a tunnel's own coverage:
    none, or a distributed antenna system of the map spec's ``tunnel_coverage``)."""
    from commap.radio.quality import USABLE_SINR_DB

    inside = corridor.in_tunnel
    text = f"tunnels {corridor.length_m[inside].sum() / 1000:.1f} km"
    if not inside.any():
        return text
    length_m = corridor.length_m[inside]
    usable = qm.sinr_db[inside] >= USABLE_SINR_DB
    share = [float(length_m[usable[:, j]].sum() / length_m.sum()) for j in range(usable.shape[1])]
    covering = [f"{nid} {100 * x:.0f} %" for nid, x in zip(qm.network_ids, share, strict=True) if x]
    return f"{text}, usable inside: {', '.join(covering) if covering else 'no network'}"


def route_coverage_table(
    corridor: Corridor, qm: QualityMatrix, catalogue: NetworkCatalogue
) -> Table:
    """Per network: usable, measured and unknown share of the route, median SINR where known.

    Where the map has no data near a stretch (``unknown``), the stretch counts as neither usable
    nor measured, and a network unknown along the whole route prints ``unknown``.
    """
    import numpy as np
    from rich import box
    from rich.table import Table

    from commap.radio.quality import NO_SIGNAL_SINR_DB, USABLE_SINR_DB, Provenance

    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for col in ("network", "kind", "usable", "measured", "unknown", "median SINR dB"):
        table.add_column(col, no_wrap=True)
    weights = corridor.length_m / max(corridor.total_length_m, 1e-9)
    unknown = np.asarray(qm.unknown, dtype=bool).reshape(qm.shape)
    known = ~unknown & (qm.provenance != Provenance.NONE)
    usable = known & (qm.sinr_db >= USABLE_SINR_DB)
    for j, nid in enumerate(qm.network_ids):
        measured = known[:, j] & (qm.provenance[:, j] == Provenance.MEASURED)
        sinr = qm.sinr_db[known[:, j], j]
        table.add_row(
            nid,
            catalogue[nid].kind.value,
            f"{100 * float(weights[usable[:, j]].sum()):.0f} %",
            f"{100 * float(weights[measured].sum()):.0f} %",
            f"{100 * float(weights[unknown[:, j]].sum()):.0f} %",
            _fmt(float(np.median(sinr)), none_at=NO_SIGNAL_SINR_DB) if sinr.size else "unknown",
        )
    table.caption = (
        f"usable: SINR >= {USABLE_SINR_DB:g} dB; no network usable on "
        f"{100 * float(weights[~usable.any(axis=1)].sum()):.1f} % of the route"
    )
    return table


def _plan_request(
    *,
    origin: str | None,
    destination: str | None,
    via: list[str],
    route_file: str | None,
    depart: str | None,
    app_class: str,
    min_dwell_s: float,
    max_handovers: int | None,
    sat_budget_mb: float | None,
    alternatives: int,
    time_limit_s: float,
    allow_stale_elements: bool = False,
    vehicle: str | None = None,
) -> Any:
    if route_file is not None and (origin or destination or via):
        raise InvalidInputError("give --route FILE or --from/--to, not both", field="--route")
    # bad coordinates are reported before the planner is imported
    start = parse_latlon(origin, field="--from") if origin else None
    end = parse_latlon(destination, field="--to") if destination else None
    waypoints = tuple(parse_latlon(v, field="--via") for v in via)

    from commap.geo.routefile import load_route
    from commap.service.planning import PlanRequest
    from commap.timeutil import parse_time

    return PlanRequest(
        origin=start,
        destination=end,
        waypoints=waypoints,
        route=load_route(route_file) if route_file is not None else None,
        departure_s=parse_time(depart, field="--depart") if depart else None,
        app=app_class,
        min_dwell_s=min_dwell_s,
        max_handovers=max_handovers,
        sat_budget_mb=sat_budget_mb,
        alternatives=alternatives,
        time_limit_s=time_limit_s,
        allow_stale_elements=allow_stale_elements,
        vehicle=vehicle,
    )


@app.command()
@_friendly
def plan(
    map_name: MapOpt = "andorra",
    origin: Annotated[str | None, typer.Option("--from", help="LAT,LON")] = None,
    destination: Annotated[str | None, typer.Option("--to", help="LAT,LON")] = None,
    via: Annotated[
        list[str] | None, typer.Option("--via", help="LAT,LON waypoint (repeat)")
    ] = None,
    route_file: Annotated[str | None, typer.Option("--route", help=_ROUTE_HELP)] = None,
    depart: Annotated[str | None, typer.Option("--depart", help="ISO 8601 departure")] = None,
    app_class: Annotated[
        str, typer.Option("--app", help="teleoperation|telemetry|infotainment")
    ] = defaults.APP,
    min_dwell_s: Annotated[float, typer.Option("--min-dwell-s", min=0.0)] = defaults.MIN_DWELL_S,
    max_handovers: Annotated[
        int | None, typer.Option("--max-handovers", min=0)
    ] = defaults.MAX_HANDOVERS,
    sat_budget_mb: Annotated[
        float | None, typer.Option("--sat-budget-mb", min=0.0)
    ] = defaults.SAT_BUDGET_MB,
    alternatives: Annotated[
        int, typer.Option("--alternatives", "-k", min=1, max=defaults.MAX_ALTERNATIVES)
    ] = defaults.ALTERNATIVES,
    time_limit_s: Annotated[
        float, typer.Option("--time-limit-s", min=0.01)
    ] = defaults.SOLVER_TIME_LIMIT_S,
    fmt: Annotated[str, typer.Option("--format", help="table|json|geojson")] = "table",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write .json/.geojson/.gpkg")
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="HOST:PORT of a commap server")
    ] = None,
    allow_stale_elements: StaleOpt = False,
    vehicle: Annotated[
        str | None,
        typer.Option(
            "--vehicle",
            help="Vehicle set-up: single_modem, dual_modem, satellite_always_on, "
            "satellite_on_demand (switch times; no satellite without a terminal). "
            "Default: one modem, an always-on satellite terminal.",
        ),
    ] = None,
) -> None:
    """Plan the network for every stretch of a route, and the handover points."""
    import json

    if fmt not in ("table", "json", "geojson"):
        raise InvalidInputError(
            f"--format must be table, json or geojson, not {fmt!r}", field="--format"
        )
    request = _plan_request(
        origin=origin,
        destination=destination,
        via=via or [],
        route_file=route_file,
        depart=depart,
        app_class=app_class,
        min_dwell_s=min_dwell_s,
        max_handovers=max_handovers,
        sat_budget_mb=sat_budget_mb,
        alternatives=alternatives,
        time_limit_s=time_limit_s,
        allow_stale_elements=allow_stale_elements,
        vehicle=vehicle,
    )
    if server:
        from server.client import plan_remote

        result: Any = plan_remote(server, map_name, request)
    else:
        from commap.map.comm_map import CommMap
        from commap.service.planning import plan_route

        result = plan_route(CommMap.load(map_name), request)
    _say_epochs(result.plan.element_epochs, getattr(result, "notices", ()))
    if out is not None:
        from commap.plan import write_plan

        write_plan(result.plan, out)
        err_console.print(f"plan written to {out}")
    if fmt == "json":
        payload = result.plan.to_dict()
        if result.choice is not None:
            payload["alternatives"] = result.choice.table()
        typer.echo(json.dumps(payload, indent=2, allow_nan=False))
    elif fmt == "geojson":
        typer.echo(json.dumps(result.plan.to_geojson(), indent=2, allow_nan=False))
    else:
        _print_plan(result)


# The text columns of the plan tables and how narrow each may get: their words wrap on a narrow
# terminal, while the figures beside them stay on one line.
_TEXT_COLUMNS = {"lat, lon": 9, "from": 8, "to": 8, "kind": 11, "network": 8, "route": 10}


def _plan_table(title: str, columns: tuple[str, ...]) -> Table:
    """A table of ``commap plan`` that fits 80 columns: text wraps, no cell is cut short."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    for col in columns:
        narrowest = _TEXT_COLUMNS.get(col)
        table.add_column(col, overflow="fold", no_wrap=narrowest is None, min_width=narrowest)
    return table


def _print_plan(result: Any) -> None:
    from commap.timeutil import format_time

    p = result.plan
    t = p.totals
    console.print(
        f"[bold]{result.route.name or 'route'}[/]: {t.length_m / 1000:.1f} km, "
        f"{t.duration_s / 60:.1f} min from {format_time(p.departure_s)}, app {p.app}; "
        f"solver {p.solver.name} {p.solver.status} (gap {100 * p.solver.gap:.2f} %, "
        f"{p.solver.time_s * 1000:.0f} ms)"
    )
    if p.solver.merge_summary:  # the status and gap above are of the solver's own plan
        console.print(p.solver.merge_summary)
    console.print(
        f"expected service loss {t.expected_loss_s:.1f} s in {t.loss_events:.2f} gaps; "
        f"expected drops {t.expected_drops:.2f}, handovers {t.handovers} "
        f"({', '.join(f'{k} {v}' for k, v in t.handovers_by_kind.items()) or 'none'}), "
        f"outage {t.outage_s:.1f} s, interruption {t.interruption_s:.1f} s, satellite {t.sat_mb:.1f} MB"
    )
    # what the plan can count on inside the tunnels (a local plan: a server's answer carries
    # no quality matrix)
    corridor = getattr(result, "corridor", None)
    if corridor is not None and corridor.in_tunnel.any():
        console.print(_tunnel_summary(corridor, result.matrix))
    stretches = _plan_table("networks along the route", ("from km", "to km", "network", "share"))
    for start, stop, nid in p.stretches():
        km0 = p.distance_m[start] / 1000
        km1 = (p.distance_m[stop - 1] + p.length_m[stop - 1]) / 1000
        stretches.add_row(
            f"{km0:.2f}",
            f"{km1:.2f}",
            nid,
            f"{100 * (km1 - km0) * 1000 / max(t.length_m, 1e-9):.0f} %",
        )
    console.print(stretches)
    if p.handovers:
        prepare = any(h.prepare_s > 0 for h in p.handovers)
        columns = ("km", "eta min", "lat, lon", "from", "to", "kind", "fail p")
        # prep s: how long before the switch to register the standby or wake the terminal
        table = _plan_table("handovers", (*columns, "prep s") if prepare else columns)
        for h in p.handovers:
            row = [
                f"{h.distance_m / 1000:.2f}",
                f"{h.eta_s / 60:.1f}",
                f"{h.lat:.5f}, {h.lon:.5f}",
                h.from_network,
                h.to_network,
                # words wrap where an identifier would be cut: "terrestrial leo"
                str(h.kind).replace("_", " "),
                f"{h.failure_prob:.3f}",
            ]
            table.add_row(*row, *([f"{h.prepare_s:g}"] if prepare else []))
        console.print(table)
    if result.choice is not None:
        alt = _plan_table(
            "route alternatives (score = travel time + drops x seconds_per_drop)",
            ("#", "route", "km", "min", "exp. drops", "handovers", "score s", "picked"),
        )
        for row in result.choice.table():
            alt.add_row(
                str(row["index"] + 1),
                row["name"],
                f"{row['length_m'] / 1000:.1f}",
                f"{row['travel_time_s'] / 60:.1f}",
                f"{row['expected_drops']:.2f}",
                str(row["handovers"]),
                f"{row['score_s']:.0f}",
                "*" if row["picked"] else "",
            )
        console.print(alt)


def _timeline(
    cmap: Any, origin: str | None, destination: str | None, plan_file: Path | None, app_class: str
) -> Any:
    """The plan to draw: the plan file as written (any format of ``commap plan --out``), or a
    plan made now from --from/--to with the default options and ``--app``."""
    from commap.out.timeline import read_plan, timeline_from_plan, with_map_quality
    from commap.service.planning import PlanRequest, plan_route

    if plan_file is not None:
        if origin or destination:
            raise InvalidInputError("give --plan or --from/--to, not both", field="--plan")
        return with_map_quality(read_plan(plan_file), cmap)
    if not (origin and destination):
        raise InvalidInputError("give --from and --to, or --plan FILE", field="--from")
    request = PlanRequest(
        origin=parse_latlon(origin, field="--from"),
        destination=parse_latlon(destination, field="--to"),
        app=app_class,
    )
    return timeline_from_plan(plan_route(cmap, request))


@app.command()
@_friendly
def view(
    map_name: MapOpt = "andorra",
    plan_file: Annotated[
        Path | None, typer.Option("--plan", help="Plan file (.json, .geojson, .gpkg) to draw.")
    ] = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0: any free port")] = 8765,
    spacing_m: Annotated[float, typer.Option("--spacing-m", min=20.0)] = 200.0,
    time: Annotated[str | None, typer.Option("--time", help="ISO 8601 or epoch s")] = None,
) -> None:
    """Serve the offline map viewer on http://127.0.0.1 (Ctrl-C stops it)."""
    from commap.map.comm_map import CommMap
    from commap.out.gis import read_plan_layers
    from commap.out.viewer import ViewerServer
    from commap.timeutil import parse_time

    cmap = CommMap.load(map_name)
    plan = read_plan_layers(plan_file) if plan_file is not None else None
    t_s = None if time is None else parse_time(time, field="--time")
    server = ViewerServer(cmap, plan=plan, port=port, spacing_m=spacing_m, t_s=t_s)
    console.print(f"viewer of map [bold]{cmap.name}[/] at [bold]{server.url}[/] (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@app.command()
@_friendly
def plot(
    map_name: MapOpt = "andorra",
    origin: Annotated[str | None, typer.Option("--from", help="LAT,LON")] = None,
    destination: Annotated[str | None, typer.Option("--to", help="LAT,LON")] = None,
    plan_file: Annotated[
        Path | None,
        typer.Option("--plan", help="Plan file of `commap plan --out` (.json, .geojson, .gpkg)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="FILE.png")] = Path("plan.png"),
    kind: Annotated[str, typer.Option("--kind", help="map|strip|coverage|all")] = "all",
    app_class: Annotated[
        str, typer.Option("--app", help="With --from/--to: plan now for this application.")
    ] = defaults.APP,
) -> None:
    """PNGs: the route map (FILE.png), the strip chart (FILE-strip.png), coverage (FILE-coverage.png)."""
    from commap.map.comm_map import CommMap
    from commap.out import plot as plots

    if kind not in ("map", "strip", "coverage", "all"):
        raise InvalidInputError(
            f"--kind must be map, strip, coverage or all, not {kind!r}", field="--kind"
        )
    cmap = CommMap.load(map_name)
    timeline = _timeline(cmap, origin, destination, plan_file, app_class)
    written = []
    if kind in ("map", "all"):
        written.append(plots.plot_route_map(cmap, timeline, out))
    if kind in ("strip", "all"):
        written.append(
            plots.plot_strip(
                timeline, out if kind == "strip" else out.with_name(f"{out.stem}-strip.png")
            )
        )
    if kind == "coverage" or (kind == "all" and cmap.roads is not None):
        target = out if kind == "coverage" else out.with_name(f"{out.stem}-coverage.png")
        written.append(plots.plot_coverage(cmap, target, timeline=timeline))
    console.print(plots.route_title(timeline), markup=False)
    if kind == "all" and cmap.roads is None:
        console.print(
            f"map {cmap.name} has no road graph: no coverage picture along its roads "
            "(the route map and the strip chart show the plan)"
        )
    for path in written:
        console.print(f"wrote [bold]{path}[/]")


@app.command()
@_friendly
def report(
    map_name: MapOpt = "andorra",
    trace: Annotated[Path | None, typer.Option("--trace", help="G-NetTrack CSV or zip")] = None,
    trace_name: Annotated[str | None, typer.Option("--trace-name", help="Trace in a zip")] = None,
    network: Annotated[
        str | None,
        typer.Option(
            "--network", help="Network the trace measured (default: the map's measured one)"
        ),
    ] = None,
    origin: Annotated[str | None, typer.Option("--from", help="LAT,LON")] = None,
    destination: Annotated[str | None, typer.Option("--to", help="LAT,LON")] = None,
    app_class: Annotated[str, typer.Option("--app")] = defaults.APP,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory")] = Path("report"),
    generated_at: Annotated[
        str | None, typer.Option("--date", help="Date printed on the report (default none)")
    ] = None,
) -> None:
    """Route connectivity test report: report.html (self-contained), report.json, PNGs."""
    from commap.map.comm_map import CommMap
    from commap.out.route_report import measured_network, read_trace, route_report
    from commap.service.planning import PlanRequest

    cmap = CommMap.load(map_name)
    if (trace is None) == (origin is None and destination is None):
        raise InvalidInputError("give --trace FILE, or --from and --to", field="--trace")
    if trace is not None:
        network_id = network or measured_network(cmap)
        records = read_trace(trace, network_id=network_id, trace_name=trace_name)
        files = route_report(cmap, out, trace=records, generated_at=generated_at)
    else:
        if not (origin and destination):
            raise InvalidInputError("give both --from and --to", field="--to")
        request = PlanRequest(
            origin=parse_latlon(origin, field="--from"),
            destination=parse_latlon(destination, field="--to"),
            app=app_class,
        )
        files = route_report(cmap, out, request=request, generated_at=generated_at)
    console.print(f"report written to [bold]{files.html}[/] and {files.json.name}")


@app.command()
@_friendly
def export(
    map_name: MapOpt = "andorra",
    out: Annotated[Path, typer.Option("--out", "-o", help=".gpkg, .geojson or .kml")] = Path(
        "map.gpkg"
    ),
    plan_file: Annotated[
        Path | None,
        typer.Option("--plan", help="Export this plan (.json, .geojson, .gpkg) instead of the map"),
    ] = None,
    spacing_m: Annotated[float, typer.Option("--spacing-m", min=20.0)] = 200.0,
    time: Annotated[str | None, typer.Option("--time", help="ISO 8601 or epoch s")] = None,
) -> None:
    """Export the map (roads + coverage along them) or a plan for QGIS / Google Earth."""
    from commap.map.comm_map import CommMap
    from commap.out.gis import export_map, read_plan_layers, write_layers
    from commap.timeutil import parse_time

    if plan_file is not None:
        path = write_layers(read_plan_layers(plan_file), out)
    else:
        cmap = CommMap.load(map_name)
        t_s = None if time is None else parse_time(time, field="--time")
        path = export_map(cmap, out, spacing_m=spacing_m, t_s=t_s)
    console.print(f"wrote [bold]{path}[/]")


@app.command("evaluate")
@_friendly
def evaluate_command(
    map_name: MapOpt = "andorra",
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Truth seeds.")] = 20,
    sigma_db: Annotated[
        float, typer.Option("--sigma-db", min=0.0, help="Map-error sigma (dB).")
    ] = 6.0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("evaluation"),
    real_map: Annotated[
        str | None,
        typer.Option(
            "--real-map",
            help="Also judge on a real truth: a map learned from earlier drives (with --real-drive).",
        ),
    ] = None,
    real_drive: Annotated[
        Path | None,
        typer.Option(
            "--real-drive",
            help="A later drive with several networks measured at once (records CSV/Parquet).",
        ),
    ] = None,
) -> None:
    """Score every handover policy on a truth field the planner did not see; write a report.

    With ``--real-map`` and ``--real-drive`` the later drive is replayed second by second on
    every terrestrial vehicle set-up (as ``commap replay``), its report goes to ``OUT/real/`` and
    its rows (truth ``real``) join the synthetic ones in ``OUT/summary.csv``.
    """
    import dataclasses

    if (real_map is None) != (real_drive is None):
        raise InvalidInputError("--real-map and --real-drive go together", field="--real-drive")
    start = time.perf_counter()
    from commap.map.comm_map import CommMap
    from commap.out.evaluation_report import (
        evaluation_markdown,
        summary_rows,
        write_evaluation_report,
    )
    from commap.sim import evaluate_map

    cmap = CommMap.load(map_name)
    real = _real_truth(real_map, real_drive) if real_map and real_drive else None
    with console.status("evaluating") as status:
        result = evaluate_map(
            cmap,
            seeds=seeds,
            sigma_db=sigma_db,
            progress=lambda msg: status.update(msg),
        )
        if real is not None:
            status.update("replaying the real drive")
            replay = real()
        # the report states the run's wall time so far: imports, map load and evaluation
        result = dataclasses.replace(result, wall_s=time.perf_counter() - start)
        write_evaluation_report(result, out)
        if real is not None:
            from commap.files import write_text_atomic
            from commap.out.replay_report import replay_markdown, write_replay_report

            write_replay_report(replay, out / "real")
            both = _with_rows(summary_rows(result), replay)
            write_text_atomic(out / "summary.csv", both.to_csv(index=False, float_format="%.6g"))
    console.print(evaluation_markdown(result))
    if real is not None:
        console.print(replay_markdown(replay))
    console.print(
        f"report written to [bold]{out}[/]; whole run {time.perf_counter() - start:.1f} s "
        "(map load, evaluation, report)"
    )


def _real_truth(map_name: str, drive: Path) -> Any:
    """The replay of ``drive`` on ``map_name``, ready to run (inputs checked first)."""
    from commap.map.comm_map import CommMap
    from commap.radio.measurements import read_records
    from commap.service.planning import PlanRequest, plan_route
    from commap.sim.multidrive import replay_drive

    if not drive.is_file():
        raise InvalidInputError(f"--real-drive {drive}: no such file", field="--real-drive")
    cmap = CommMap.load(map_name)
    records = read_records(drive)

    def run() -> Any:
        return replay_drive(
            cmap,
            records,
            planner=lambda m, r, v: plan_route(m, PlanRequest(route=r, vehicle=v)),
        )

    return run


def _with_rows(summary: Any, replay: Any) -> Any:
    """The evaluation summary with the replay's rows (truth ``real``) below it."""
    import pandas as pd

    return pd.concat([summary, replay.summary()], ignore_index=True, sort=False)


@app.command("validate")
@_friendly
def validate_command(
    map_name: MapOpt = "andorra",
    folds: Annotated[int, typer.Option("--folds", help="Cross-validation folds (>= 2).")] = 5,
    group: Annotated[
        str, typer.Option("--group", help="Fold groups: drive, day or block (never rows).")
    ] = "drive",
    block_m: Annotated[
        float, typer.Option("--block-m", help="Block size for --group block (m).")
    ] = 300.0,
    network: Annotated[
        list[str] | None, typer.Option("--network", "-n", help="Only this network (repeatable).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("validation"),
) -> None:
    """Cross-validate the learned map against baselines on the map's own measurements."""
    from commap.map.comm_map import CommMap
    from commap.map.validate import GROUPS, validate_map
    from commap.out.validation_report import validation_markdown, write_validation_report

    if group not in GROUPS:
        raise InvalidInputError(f"--group {group!r} must be one of {', '.join(GROUPS)}")
    if folds < 2:
        raise InvalidInputError(f"--folds {folds}: need at least 2 folds")
    if not block_m > 0:
        raise InvalidInputError(f"--block-m {block_m}: must be > 0")
    cmap = CommMap.load(map_name)
    with console.status("validating") as status:
        result = validate_map(
            cmap,
            folds=folds,
            group=group,
            block_m=block_m,
            networks=network or None,
            progress=lambda msg: status.update(msg),
        )
        write_validation_report(result, out)
    console.print(validation_markdown(result))
    console.print(f"report written to [bold]{out}[/]")


@app.command("replay")
@_friendly
def replay_command(
    map_name: MapOpt = "andorra",
    drive: Annotated[
        Path,
        typer.Option(
            "--drive",
            help="Records of several networks measured at the same time (.csv, .csv.gz, "
            ".parquet, or a directory of them).",
        ),
    ] = Path("drive.csv"),
    network_ids: Annotated[
        str | None, typer.Option("--network-ids", help="Comma-separated networks to choose from.")
    ] = None,
    app_class: Annotated[str, typer.Option("--app", help="Application class.")] = defaults.APP,
    weight: Annotated[
        list[str] | None,
        typer.Option(
            "--weight",
            help="Objective weight NAME=VALUE of the plans (repeatable), e.g. interruption_s=0.3.",
        ),
    ] = None,
    vehicle: Annotated[
        list[str] | None,
        typer.Option(
            "--vehicle",
            help="Vehicle set-up (repeatable): single_modem, dual_modem, bonded, "
            "satellite_always_on, satellite_on_demand. Default: the three terrestrial ones, and "
            "satellite_always_on where the drive has a satellite network.",
        ),
    ] = None,
    tolerance_s: Annotated[
        float,
        typer.Option(
            "--tolerance-s", help="Shortest run of lost seconds that counts as a loss event (s)."
        ),
    ] = 1.0,
    priority: Annotated[
        str | None,
        typer.Option(
            "--priority",
            help="Comma-separated order of the networks for the map-free baselines (primary "
            "first); default: by signal at the start of each leg.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("replay"),
) -> None:
    """Score commap's plan against map-free baselines and the oracle on each vehicle set-up."""
    from commap.map.comm_map import CommMap
    from commap.out.replay_report import replay_markdown, write_replay_report
    from commap.radio.link import app_profile
    from commap.radio.measurements import read_records
    from commap.service.planning import PlanRequest, plan_route
    from commap.sim.multidrive import replay_drive

    weights = {}
    for item in weight or []:
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise InvalidInputError(
                f"--weight {item!r}: give NAME=NUMBER", field="--weight"
            ) from None
        if not sep:
            raise InvalidInputError(f"--weight {item!r}: give NAME=NUMBER", field="--weight")
    PlanRequest(origin=(0.0, 0.0), destination=(0.0, 0.0), app=app_class, weights=weights)
    cmap = CommMap.load(map_name)
    records = read_records(drive)
    ids = [n.strip() for n in network_ids.split(",") if n.strip()] if network_ids else None
    with console.status("replaying"):
        result = replay_drive(
            cmap,
            records,
            planner=lambda m, r, v: plan_route(
                m, PlanRequest(route=r, app=app_class, weights=weights, vehicle=v)
            ),
            network_ids=ids,
            vehicles=vehicle or None,
            priority=[n.strip() for n in priority.split(",") if n.strip()] if priority else None,
            tolerance_s=tolerance_s,
            mb_per_s=app_profile(app_class).mb_per_s,
        )
        write_replay_report(result, out)
    console.print(replay_markdown(result))
    console.print(f"report written to [bold]{out}[/]")


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(app())
