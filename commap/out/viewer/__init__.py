"""Offline web viewer of a map and a plan: a local page built on Leaflet, no internet needed.

:func:`serve_viewer` starts a :class:`ViewerServer` on ``127.0.0.1``. The page draws the road graph
itself (no background tiles), coverage per network along the roads (RSRP / SINR classes,
satellite visibility; measured and modelled values styled differently), a plan's route coloured
by serving network with its handovers and drop-risk stretches, toggles by technology and
operator, a legend, and the quality of every network where the user clicks. Leaflet comes from
the npm package (``node_modules/leaflet/dist``), never from a CDN.

For a live view (the gRPC server's ``Drive`` stream), start with ``live=True`` and feed
positions with :meth:`ViewerServer.update_vehicle` and new plans with
:meth:`ViewerServer.set_plan`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from commap.out.timeline import RouteTimeline
from commap.out.viewer.server import LoggedRequest, ViewerServer, find_leaflet_dir

if TYPE_CHECKING:
    import geopandas as gpd

    from commap.map.comm_map import CommMap
    from commap.plan import Plan

__all__ = ["LoggedRequest", "ViewerServer", "find_leaflet_dir", "serve_viewer"]


def serve_viewer(
    cmap: CommMap,
    *,
    plan: Plan | RouteTimeline | Mapping[str, gpd.GeoDataFrame] | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    spacing_m: float = 200.0,
    t_s: float | None = None,
    leaflet_dir: str | os.PathLike[str] | None = None,
    live: bool = False,
    background: bool = True,
) -> ViewerServer:
    """Serve the viewer of ``cmap`` (and ``plan``) on a loopback address.

    Parameters
    ----------
    cmap : CommMap
        The map.
    plan : Plan, RouteTimeline or mapping of GeoDataFrame, optional
        A plan to draw: a :class:`commap.plan.Plan`, a timeline
        (:func:`commap.out.timeline.timeline_from_plan`, keeps the exact route line and signal
        levels), or the layers of a plan file (:func:`commap.out.gis.read_plan_layers`).
    host, port : str, int
        Loopback address and port (0: any free port; read it from ``.port`` / ``.url``).
    spacing_m : float
        Length of the road pieces coverage is sampled on.
    t_s : float, optional
        Epoch seconds of the coverage (satellites); default the map's default departure.
    leaflet_dir : path, optional
        Leaflet's ``dist`` directory (default: found in ``node_modules``).
    live : bool
        Let the page poll vehicle positions (see :meth:`ViewerServer.update_vehicle`).
    background : bool
        True: serve from a daemon thread and return at once (call ``.stop()`` when done).
        False: serve in this thread until interrupted, then return the stopped server.

    Returns
    -------
    ViewerServer
        The server (running when ``background``).

    Raises
    ------
    InvalidInputError
        A non-loopback host, a bad port, or Leaflet not installed.

    Examples
    --------
    >>> serve_viewer(None, host="0.0.0.0")  # the host is checked before the map is used
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: host '0.0.0.0' is not a loopback address (127.0.0.1 only)
    """
    server = ViewerServer(
        cmap,
        plan=plan,
        host=host,
        port=port,
        spacing_m=spacing_m,
        t_s=t_s,
        leaflet_dir=leaflet_dir,
        live=live,
    )
    if background:
        return server.start()
    server.serve_until_interrupted()
    return server
