"""The commap error tree.

Every failure the library reports is a :class:`CommapError`. Front doors map the subclasses
to their own vocabulary in one place each (CLI exit messages, gRPC status codes).
"""

from __future__ import annotations

import errno

__all__ = [
    "CommapError",
    "InvalidInputError",
    "MapNotFoundError",
    "NoFeasiblePlanError",
    "SolverTimeoutError",
    "StorageUnavailableError",
    "is_storage_fault",
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


class StorageUnavailableError(CommapError):
    """Storage cannot be used as it must be now (read-only, full, failing): retry later."""


# errno values that say the storage, not the request, is at fault
_STORAGE_ERRNOS = frozenset(
    {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}
)


def is_storage_fault(exc: BaseException) -> bool:
    """True for an OS error that means storage cannot take writes (read-only, full, failing).

    Examples
    --------
    >>> is_storage_fault(OSError(errno.ENOSPC, "No space left on device"))
    True
    >>> is_storage_fault(StorageUnavailableError("read-only"))
    True
    >>> is_storage_fault(FileNotFoundError(errno.ENOENT, "gone")), is_storage_fault(KeyError())
    (False, False)
    """
    if isinstance(exc, StorageUnavailableError):
        return True
    return isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS
