"""Progress reporting of long jobs (map builds, evaluations): one protocol and its adapter.

A job counts its steps (tiles of a map build, drives of an evaluation) and reports short status
lines. A front end implements :class:`Progress` (the CLI's progress bar does); a plain
``callable(message)`` or nothing (the log) is adapted by :func:`as_progress`, so a library
function takes any of the three as its ``progress`` argument (:data:`ProgressArg`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, TypeAlias, runtime_checkable

__all__ = ["Progress", "ProgressArg", "as_progress"]

log = logging.getLogger(__name__)


@runtime_checkable
class Progress(Protocol):
    """Progress callbacks of a long job (a CLI progress bar implements them)."""

    def total(self, steps: int, done: int = 0) -> None:
        """The job has ``steps`` steps, ``done`` of them finished by an earlier run.

        Called once, before any :meth:`advance`.
        """
        ...

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps are finished."""
        ...

    def message(self, text: str) -> None:
        """A short status line."""
        ...


ProgressArg: TypeAlias = Progress | Callable[[str], None] | None
"""What a ``progress`` argument accepts: a :class:`Progress`, a ``callable(message)`` or None."""


class _MessageProgress:
    """A :class:`Progress` that turns counts into status lines for a ``callable(message)``."""

    def __init__(self, say: Callable[[str], None] | None, *, label: str, unit: str) -> None:
        self._say = say or (lambda text: log.info("%s", text))
        self._label = label
        self._unit = unit
        self._total = 0
        self._done = 0

    def total(self, steps: int, done: int = 0) -> None:
        self._total, self._done = steps, done

    def advance(self, steps: int = 1) -> None:
        self._done += steps
        # a status line per tenth of the work: enough for a log, not a flood
        tenth = max(1, self._total // 10)
        if steps and (self._done % tenth < steps or self._done == self._total):
            self._say(f"{self._label}: {self._done}/{self._total} {self._unit} done")

    def message(self, text: str) -> None:
        self._say(text)


def as_progress(progress: ProgressArg, *, label: str = "progress", unit: str = "steps") -> Progress:
    """A :class:`Progress` from a progress object, a ``callable(message)`` or None (the log).

    Parameters
    ----------
    progress : Progress, callable(str) or None
        A :class:`Progress` is returned as it is; a callable receives status lines (one per
        tenth of the steps); None logs them at INFO level.
    label, unit : str
        How the status lines name the job and its steps: ``"<label>: 3/10 <unit> done"``.

    Returns
    -------
    Progress

    Examples
    --------
    >>> seen = []
    >>> p = as_progress(seen.append, label="edges", unit="tiles")
    >>> p.total(3, done=1); p.advance(2); p.message("merged")
    >>> seen
    ['edges: 3/3 tiles done', 'merged']
    >>> as_progress(p) is p, isinstance(as_progress(None), Progress)
    (True, True)
    """
    if isinstance(progress, Progress):
        return progress
    return _MessageProgress(progress, label=label, unit=unit)
