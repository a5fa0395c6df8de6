"""The commap error tree.

Every failure the library reports is a :class:`CommapError`. Front doors map the subclasses
to their own vocabulary in one place each (CLI exit messages, gRPC status codes).
"""

from __future__ import annotations

__all__ = [
    "CommapError",
    "InvalidInputError",
    "MapNotFoundError",
    "NoFeasiblePlanError",
    "SolverTimeoutError",
]


class CommapError(Exception):
    """Root of every error commap raises on purpose."""


class InvalidInputError(CommapError, ValueError):
    """An input (argument, file, request field) is malformed or out of range.

    Parameters
    ----------
    message : str
        What is wrong, in words a user can act on.
    field : str, optional
        The name of the offending field or file, if there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MapNotFoundError(CommapError, LookupError):
    """A map name does not resolve to a map directory."""


class NoFeasiblePlanError(CommapError):
    """No plan satisfies the constraints.

    Parameters
    ----------
    message : str
        Explanation.
    constraint : str, optional
        The constraint that cannot be met (e.g. ``"max_handovers"``, ``"sat_budget_mb"``).
    """

    def __init__(self, message: str, *, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class SolverTimeoutError(CommapError, TimeoutError):
    """The solver found no plan within its time limit."""
