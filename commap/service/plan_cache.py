"""Recently used plan inputs (routes, corridors, quality matrices), bounded, per map version.

A server plans the same trips again and again (a fleet drives the same roads; every Drive of a
trip starts with its plan). Finding the route, cutting the corridor and sampling every network
along it are pure functions of the map and the request's route and departure, and are most of
a plan's work: :class:`PlanInputsCache` keeps their results for :func:`plan_route`. A corridor
is kept by its route alone (its segments do not depend on the departure; a new trip shifts its
times), the sampled quality by route and departure.

Entries belong to one map *object*: a reloaded or fleet-refreshed map is a new object, so it
never sees the entries of the one it replaces (those age out). The cache is bounded by the
bytes of the arrays it holds and by a count of entries; least recently used entries go first.
Cached arrays are made read-only, so that a caller changing one in place fails loudly instead
of changing later plans.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np

from commap.geo.corridor import Route
from commap.map.comm_map import CommMap

__all__ = ["PlanInputsCache", "route_key"]

T = TypeVar("T")

DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_MAX_ENTRIES = 512


def route_key(route: Route) -> str:
    """A digest of every field of ``route`` (equal routes, equal keys).

    Examples
    --------
    >>> import numpy as np
    >>> a = Route(np.array([1.0, 1.1]), np.array([42.0, 42.1]), np.array([10.0]),
    ...           np.array([False]), np.array([False]))
    >>> b = Route(np.array([1.0, 1.2]), np.array([42.0, 42.1]), np.array([10.0]),
    ...           np.array([False]), np.array([False]))
    >>> route_key(a) == route_key(a), route_key(a) == route_key(b)
    (True, False)
    """
    digest = hashlib.blake2b(digest_size=20)
    for name in ("lon", "lat", "speed_mps", "in_tunnel", "on_bridge", "t_s"):
        value = getattr(route, name)
        if value is None:
            digest.update(b"none")
            continue
        array = np.ascontiguousarray(value)
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    digest.update(repr((route.edges, route.name)).encode())
    return digest.hexdigest()


def _frozen_nbytes(value: Any, depth: int = 0) -> int:
    """Make the arrays of ``value`` read-only and return their bytes (dataclasses, sequences)."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
        return int(value.nbytes)
    if depth > 3:
        return 0
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(
            _frozen_nbytes(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)
        )
    if isinstance(value, list | tuple):
        return sum(_frozen_nbytes(item, depth + 1) for item in value)
    return 0


class PlanInputsCache:
    """Least-recently-used results of a plan's pure stages, keyed by map object and inputs.

    Thread-safe: solves on several threads share one cache (two threads missing the same key
    at once both compute it; the values are equal).

    Parameters
    ----------
    max_bytes : most array bytes held (an entry larger than this is not kept).
    max_entries : most entries held.

    Examples
    --------
    >>> class Map: ...
    >>> cache, cmap = PlanInputsCache(max_entries=1), Map()
    >>> cache.get(cmap, "a", lambda: 1), cache.get(cmap, "a", lambda: 2)
    (1, 1)
    >>> cache.get(cmap, "b", lambda: 3), cache.get(cmap, "a", lambda: 4), len(cache)
    (3, 4, 1)
    """

    def __init__(
        self, *, max_bytes: int = DEFAULT_MAX_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[int, Hashable], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        # a serial number per map object: ids of collected objects are reused, serials are not
        self._serials: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._next_serial = itertools.count()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Array bytes held."""
        return self._bytes

    def _serial(self, cmap: CommMap | Any) -> int:
        serial = self._serials.get(cmap)
        if serial is None:
            serial = self._serials[cmap] = next(self._next_serial)
        return serial

    def get(self, cmap: CommMap | Any, key: Hashable, make: Callable[[], T]) -> T:
        """The value of ``key`` on ``cmap``: cached, else ``make()`` (then kept)."""
        with self._lock:
            full_key = (self._serial(cmap), key)
            entry = self._entries.get(full_key)
            if entry is not None:
                self._entries.move_to_end(full_key)
                self.hits += 1
                return entry[0]
            self.misses += 1
        value = make()  # outside the lock: other solves go on meanwhile
        size = _frozen_nbytes(value)
        with self._lock:
            if size > self.max_bytes or full_key in self._entries:
                return value
            self._entries[full_key] = (value, size)
            self._bytes += size
            while self._entries and (
                self._bytes > self.max_bytes or len(self._entries) > self.max_entries
            ):
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
        return value

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
