"""Compiled inner loops (numba), loaded only by processes that pay for them.

numba is optional at run time: without it every compiled function runs as plain Python, and
its callers keep their numpy passes (:data:`COMPILED` tells which). It is imported with the
first function loaded, not with the package: importing it and loading cached machine code
takes 1-2 s, which a command that plans one short route would wait for in vain. Loops that are
only worth it once numba is in the process anyway ask :func:`loaded`.

``cache=True`` keeps the machine code beside the module (or in the user's cache where the
install is read-only); ``nogil=True`` lets the server's solve threads run them side by side.

Functions are compiled where they are defined (a module file: the on-disk cache needs one),
with ``@compiled`` above them, as :mod:`commap.plan.kernels` does.

Examples
--------
>>> isinstance(loaded(), bool)  # nothing is loaded by asking
True
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["COMPILED", "compiled", "loaded"]

F = TypeVar("F", bound=Callable[..., Any])

COMPILED = importlib.util.find_spec("numba") is not None
_LOADED: dict[str, Callable[..., Any]] = {}


def loaded() -> bool:
    """True once any compiled function's machine code is in this process."""
    return bool(_LOADED)


def compiled(fn: F) -> F:
    """``fn`` compiled in nopython mode when first called, with an on-disk cache (as is
    without numba)."""
    if not COMPILED:  # pragma: no cover - depends on the environment
        return fn
    name = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        machine = _LOADED.get(name)
        if machine is None:
            from numba import njit

            machine = _LOADED[name] = njit(cache=True, nogil=True)(fn)
        return machine(*args)

    return cast(F, call)
