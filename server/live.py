"""The live web viewer inside the gRPC server (``--viewer-port``): Drive streams shown on a map.

:class:`LiveView` wraps a :class:`commap.out.viewer.ViewerServer` of the default map started with
``live=True``: each Drive stream on that map shows its vehicle (position, time, planned
network) and its current plan (the last plan made or re-made by any stream). The viewer is a
side show: its failures are logged and never fail a drive, and it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from commap.map.comm_map import CommMap
    from commap.out.viewer import ViewerServer
    from commap.service.planning import PlanResult

__all__ = ["LiveView"]

log = logging.getLogger(__name__)


class LiveView:
    """Vehicles and plans of Drive streams on the viewer's map.

    Parameters
    ----------
    viewer : a running viewer started with ``live=True``.

    Examples
    --------
    >>> class _Viewer:
    ...     class cmap: name = "andorra"
    ...     def __init__(self): self.seen = []
    ...     def update_vehicle(self, vehicle_id, **kw): self.seen.append(vehicle_id)
    ...     def remove_vehicle(self, vehicle_id): self.seen.remove(vehicle_id)
    >>> live = LiveView(_Viewer())
    >>> a, b = live.acquire("car"), live.acquire("car")  # two streams of one vehicle id
    >>> (a, b), live.acquire("")
    (('car', 'car#2'), 'vehicle-3')
    >>> live.vehicle(a, lon=1.5, lat=42.5, t_s=0.0, network_id="ad-lte"); live.release(a)
    """

    def __init__(self, viewer: ViewerServer) -> None:
        self.viewer = viewer
        self._lock = threading.Lock()
        self._keys: set[str] = set()
        self._count = 0

    @classmethod
    def start(cls, cmap: CommMap, *, port: int) -> LiveView:
        """Serve the live viewer of ``cmap`` on ``127.0.0.1:port`` (0: any free port).

        Raises
        ------
        InvalidInputError
            A bad port, or Leaflet not installed (``make setup``).
        """
        from commap.out.viewer import serve_viewer

        return cls(serve_viewer(cmap, port=port, live=True))

    @property
    def map_name(self) -> str:
        """The map the viewer shows."""
        return str(self.viewer.cmap.name)

    @property
    def url(self) -> str:
        """The page's address."""
        return str(self.viewer.url)

    def acquire(self, vehicle_id: str) -> str:
        """A key for one stream's vehicle, unique among open streams (``id``, ``id#2``...)."""
        with self._lock:
            self._count += 1
            base = vehicle_id or f"vehicle-{self._count}"
            key, n = base, 1
            while key in self._keys:
                n += 1
                key = f"{base}#{n}"
            self._keys.add(key)
            return key

    def plan(self, result: PlanResult) -> None:
        """Show a drive's (new) plan. Blocking (builds the plan's layers): call off the loop."""
        try:
            self.viewer.set_plan(result)
        except Exception:  # the viewer must never fail a drive
            log.exception("live viewer: could not show the plan")

    def vehicle(self, key: str, *, lon: float, lat: float, t_s: float, network_id: str) -> None:
        """Move a vehicle (cheap: a dictionary update)."""
        try:
            self.viewer.update_vehicle(key, lon=lon, lat=lat, t_s=t_s, network_id=network_id)
        except Exception:
            log.exception("live viewer: could not move vehicle %s", key)

    def release(self, key: str) -> None:
        """The stream of ``key`` ended: remove its vehicle."""
        with self._lock:
            self._keys.discard(key)
        try:
            self.viewer.remove_vehicle(key)
        except Exception:
            log.exception("live viewer: could not remove vehicle %s", key)

    def stop(self) -> None:
        """Stop the viewer's web server (blocking, up to about a second)."""
        try:
            self.viewer.stop()
        except Exception:
            log.exception("live viewer: stop failed")
