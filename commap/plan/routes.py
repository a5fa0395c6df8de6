"""Connectivity-aware route choice: plan every candidate route and pick by a trade-off.

The pure part of route choice: the caller (the map, the CLI) finds the ``k`` alternative routes
and their quality matrices; :func:`choose_route` plans each one and scores it as

``score_s = travel_time_s + seconds_per_drop * expected_drops``

(how many seconds of extra travel one avoided expected drop is worth), and returns the whole
trade-off table with the pick. Routes whose constraints cannot be met stay in the table, marked
infeasible, and are never picked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from commap.errors import InvalidInputError, NoFeasiblePlanError
from commap.geo.corridor import Corridor, Route
from commap.networks import NetworkCatalogue
from commap.plan import defaults
from commap.plan.plan import Plan, plan_corridor
from commap.plan.problem import Constraints
from commap.radio.link import AppProfile, LinkModel, Objective
from commap.radio.quality import QualityMatrix
from commap.radio.vehicle import VehicleSetup

__all__ = ["RouteCandidate", "RouteChoice", "RouteOption", "choose_route"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteCandidate:
    """One alternative route with its corridor and quality matrix."""

    route: Route
    corridor: Corridor
    matrix: QualityMatrix
    name: str = ""


@dataclass(frozen=True)
class RouteOption:
    """One row of the trade-off table.

    ``plan`` is None and ``score_s`` infinite when the route's constraints cannot be met
    (``reason`` says why).
    """

    index: int
    name: str
    length_m: float
    travel_time_s: float
    expected_drops: float
    handovers: int
    outage_s: float
    sat_mb: float
    score_s: float
    feasible: bool
    reason: str
    plan: Plan | None

    def row(self) -> dict[str, Any]:
        """The option as a table row (no plan)."""
        return {
            "index": self.index,
            "name": self.name,
            "length_m": self.length_m,
            "travel_time_s": self.travel_time_s,
            "expected_drops": self.expected_drops,
            "handovers": self.handovers,
            "outage_s": self.outage_s,
            "sat_mb": self.sat_mb,
            "score_s": self.score_s,
            "feasible": self.feasible,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RouteChoice:
    """Every option, the index of the pick and the trade-off weight used."""

    options: tuple[RouteOption, ...]
    best: int
    seconds_per_drop: float

    @property
    def picked(self) -> RouteOption:
        """The chosen option."""
        return self.options[self.best]

    def table(self) -> list[dict[str, Any]]:
        """Trade-off table rows, in candidate order, with a ``picked`` flag."""
        return [{**o.row(), "picked": o.index == self.best} for o in self.options]


def choose_route(
    candidates: Sequence[RouteCandidate | tuple[Route, Corridor, QualityMatrix]],
    catalogue: NetworkCatalogue,
    *,
    seconds_per_drop: float = defaults.SECONDS_PER_DROP,
    link: LinkModel | None = None,
    app: AppProfile | str = defaults.APP,
    objective: Objective | None = None,
    constraints: Constraints | None = None,
    solver: str = defaults.SOLVER,
    time_limit_s: float = defaults.SOLVER_TIME_LIMIT_S,
    seed: int = defaults.SEED,
    vehicle: VehicleSetup | None = None,
) -> RouteChoice:
    """Plan every candidate route and pick the best travel-time / drops trade-off.

    Parameters
    ----------
    candidates : sequence of RouteCandidate or (Route, Corridor, QualityMatrix)
        The alternatives, e.g. the k fastest routes, fastest first.
    catalogue : NetworkCatalogue
        Networks of the map.
    seconds_per_drop : float
        Extra travel time one avoided expected drop is worth (0: fastest route wins).
    link, app, objective, constraints, solver, time_limit_s, seed, vehicle
        Planning settings, the same for every route (``time_limit_s`` per route).

    Returns
    -------
    RouteChoice
        The table and the pick; ties go to the earlier candidate.

    Raises
    ------
    InvalidInputError
        No candidates, or a negative ``seconds_per_drop``.
    NoFeasiblePlanError
        No candidate route can meet the constraints.

    Examples
    --------
    >>> choose_route([], NetworkCatalogue([]))
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: choose_route needs at least one candidate route
    """
    if not candidates:
        raise InvalidInputError("choose_route needs at least one candidate route", field="routes")
    if not (math.isfinite(seconds_per_drop) and seconds_per_drop >= 0):
        raise InvalidInputError(
            "seconds_per_drop must be a finite number >= 0", field="seconds_per_drop"
        )
    options = []
    for i, cand in enumerate(candidates):
        c = cand if isinstance(cand, RouteCandidate) else RouteCandidate(*cand)
        options.append(
            _option(
                i,
                c,
                catalogue,
                seconds_per_drop,
                link=link,
                app=app,
                objective=objective,
                constraints=constraints,
                solver=solver,
                time_limit_s=time_limit_s,
                seed=seed,
                vehicle=vehicle,
            )
        )
    feasible = [o for o in options if o.feasible]
    if not feasible:
        reasons = "; ".join(f"route {o.index}: {o.reason}" for o in options)
        raise NoFeasiblePlanError(
            f"no candidate route meets the constraints ({reasons})",
            constraint=_first_constraint(options),
        )
    best = min(feasible, key=lambda o: (o.score_s, o.index))
    log.info(
        "route choice: %d of %d routes feasible, picked %d", len(feasible), len(options), best.index
    )
    return RouteChoice(tuple(options), best.index, seconds_per_drop)


def _option(
    index: int,
    cand: RouteCandidate,
    catalogue: NetworkCatalogue,
    seconds_per_drop: float,
    **settings: Any,
) -> RouteOption:
    cor = cand.corridor
    name = cand.name or cand.route.name or f"route {index}"
    length = cor.total_length_m if len(cor) else 0.0
    travel = cor.total_duration_s if len(cor) else 0.0
    try:
        plan = plan_corridor(cor, cand.matrix, catalogue, **settings)
    except NoFeasiblePlanError as exc:
        return RouteOption(
            index,
            name,
            length,
            travel,
            math.nan,
            0,
            math.nan,
            math.nan,
            math.inf,
            False,
            f"{exc.constraint}: {exc}",
            None,
        )
    t = plan.totals
    score = travel + seconds_per_drop * t.expected_drops
    return RouteOption(
        index,
        name,
        length,
        travel,
        t.expected_drops,
        t.handovers,
        t.outage_s,
        t.sat_mb,
        score,
        True,
        "",
        plan,
    )


def _first_constraint(options: list[RouteOption]) -> str | None:
    for o in options:
        if o.reason:
            return o.reason.split(":", 1)[0]
    return None
