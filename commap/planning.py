"""Planning facade: one request in, a plan (and its route alternatives) out.

Front doors (CLI, gRPC server) call :func:`plan_route`; it resolves the route (origin ->
destination on the road graph, explicit waypoints or a polyline), cuts the corridor, samples
the map and runs the solver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from commap.corridor import Route

__all__ = ["PlanRequest"]


@dataclass(frozen=True, kw_only=True)
class PlanRequest:
    """What a user asks for. Positions are ``(lon, lat)`` WGS84 degrees.

    Exactly one of ``origin``+``destination`` (optionally with ``waypoints`` between them) or
    ``route`` (an explicit polyline / recorded drive) must be given.
    """

    origin: tuple[float, float] | None = None
    destination: tuple[float, float] | None = None
    waypoints: tuple[tuple[float, float], ...] = ()
    route: Route | None = None
    departure_s: float | None = None
    app: str = "default"
    min_dwell_s: float = 0.0
    max_handovers: int | None = None
    sat_budget_mb: float | None = None
    alternatives: int = 1
    weights: dict[str, float] = field(default_factory=dict)
    time_limit_s: float = 5.0
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
