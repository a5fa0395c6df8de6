"""The manifest of a built map (``manifest.json``): typed, validated on read, written atomically.

A built map directory holds ``manifest.json`` beside its tables. :class:`Manifest` is its one
typed form: :meth:`Manifest.read` validates every key it needs (a missing key, a wrong type,
``segment_m <= 0``, a name that is no identifier, a file path leaving the map directory or a
duplicate network id raise :class:`~commap.errors.InvalidInputError`
naming the file and the key) and :meth:`Manifest.write` writes it back with the same field
names, through :func:`commap.files.write_json_atomic`. :func:`resolve_map_dir` finds a built map
by name or path.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> manifest = Manifest(
...     name="tiny", commap_version="0.1.0", bbox=(1.0, 42.0, 1.1, 42.1), segment_m=50.0,
...     networks=(NetworkEntry(fields={"id": "lte", "kind": "terrestrial"},
...                            layer={"type": "terrestrial"}),),
... )
>>> manifest.write(folder / MANIFEST)
>>> Manifest.read(folder / MANIFEST) == manifest
True
>>> (folder / MANIFEST).write_text('{"format": "commap-map/1"}')
26
>>> Manifest.read(folder / MANIFEST)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
commap.errors.InvalidInputError: .../manifest.json: missing key 'segment_m'
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from commap.config import Settings
from commap.errors import InvalidInputError, MapNotFoundError
from commap.files import write_json_atomic
from commap.networks import Network, NetworkKind

__all__ = [
    "BUILT_FILE_KEYS",
    "FORMAT",
    "MANIFEST",
    "MAP_NAME",
    "NETWORK_FIELDS",
    "BuildInputs",
    "IngestCount",
    "Manifest",
    "NetworkEntry",
    "RoadsSource",
    "TerrainSource",
    "resolve_map_dir",
]

MANIFEST = "manifest.json"
FORMAT = "commap-map/1"
MAP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# layer-spec keys naming files of the built map (layers read them from the built directory)
BUILT_FILE_KEYS = frozenset({"sites", "tle_file", "horizon_file", "table", "models"})
# Catalogue fields of a network, in the order the manifest records them.
NETWORK_FIELDS = (
    "id",
    "kind",
    "operator",
    "technology",
    "latency_ms",
    "cost_per_mb",
    "frequency_mhz",
    "min_elevation_deg",
    "tle_file",
    "orbital_longitude_deg",
    "display_name",
)


class _Fields:
    """Typed access to one JSON object of a manifest; errors name the file and the key."""

    def __init__(self, source: str, value: Any, prefix: str = "") -> None:
        self.source = source
        self.prefix = prefix
        if not isinstance(value, dict):
            where = f"key {prefix!r}" if prefix else "the manifest"
            raise InvalidInputError(f"{source}: {where} must be a JSON object")
        self.value: dict[str, Any] = value

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str) -> InvalidInputError:
        return InvalidInputError(f"{self.source}: key {self.key(name)!r} {problem}", field=name)

    def get(self, name: str, types: type | tuple[type, ...], default: Any = ...) -> Any:
        if name not in self.value or (default is not ... and self.value[name] is None):
            if default is ...:
                raise InvalidInputError(
                    f"{self.source}: missing key {self.key(name)!r}", field=name
                )
            return default
        value: Any = self.value[name]
        numeric = types in (float, (int, float))
        # JSON has no int/float distinction to keep: 50 is a valid segment_m; true is no number
        if isinstance(value, bool) or not isinstance(value, types):
            expected = getattr(types, "__name__", "number")
            raise self.fail(name, f"must be {expected}, got {type(value).__name__}")
        if numeric and not math.isfinite(self.value[name]):
            raise self.fail(name, "must be a finite number")
        return value

    def number(self, name: str, default: Any = ...) -> float:
        return float(self.get(name, (int, float), default))

    def child(self, name: str, default: Any = ...) -> _Fields | None:
        value = self.get(name, dict, default)
        return None if value is None else _Fields(self.source, value, self.key(name))

    def strings(self, name: str, default: Any = ...) -> tuple[str, ...]:
        items = self.get(name, list, default)
        if not all(isinstance(item, str) for item in items):
            raise self.fail(name, "must be a list of strings")
        return tuple(items)

    def string_map(self, name: str, default: Any = ...) -> dict[str, str]:
        items = self.get(name, dict, default)
        if not all(isinstance(v, str) for v in items.values()):
            raise self.fail(name, "must map names to strings")
        return dict(items)

    def inside(self, name: str, path: str) -> str:
        """``path`` if it stays inside the map directory (relative, no ``..``), else an error."""
        if not _is_inside(path):
            raise self.fail(name, f"must be a path inside the map directory, got {path!r}")
        return path

    def no_path_outside(self, name: str, value: Any, *, built_file: bool = False) -> None:
        """Refuse a file of the built map in ``value`` (a layer spec) that lies outside it.

        Only the keys a layer reads from the built directory are checked (:data:`BUILT_FILE_KEYS`,
        at any depth): source files a measured layer names for validation may lie anywhere.
        """
        if isinstance(value, str) and built_file and _escapes(value):
            raise self.fail(name, f"must be a path inside the map directory, got {value!r}")
        if isinstance(value, dict):
            for key, item in value.items():
                inner = built_file or key in BUILT_FILE_KEYS
                self.no_path_outside(f"{name}.{key}", item, built_file=inner)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.no_path_outside(f"{name}[{i}]", item, built_file=built_file)


def _escapes(text: str) -> bool:
    """True for text that reads as a path leaving its directory (absolute, ``~``, ``..``)."""
    parts = text.replace("\\", "/").split("/")
    return text.startswith(("/", "~", "\\")) or ".." in parts


def _is_inside(path: str) -> bool:
    return bool(path.strip()) and not _escapes(path) and "\x00" not in path


@dataclass(frozen=True)
class NetworkEntry:
    """One network of a built map: catalogue fields, its layer and the derived tables."""

    fields: Mapping[str, Any]
    layer: Mapping[str, Any]
    cache: str | None = None
    measured: Mapping[str, Any] | None = None
    # measured records behind the network's tables: {field: {"used": n, "dropped": {reason: n}}}
    # (reasons: wrong_network_id, out_of_time_window, out_of_bbox, nan); None: nothing measured
    ingest: Mapping[str, IngestCount] | None = None

    @property
    def id(self) -> str:
        """The network id."""
        return str(self.fields["id"])

    @property
    def layer_type(self) -> str:
        """The layer type (``terrestrial``, ``satellite``, ``measured``, ...)."""
        return str(self.layer.get("type", ""))

    def network(self) -> Network:
        """The catalogue :class:`~commap.networks.Network` of this entry.

        Raises
        ------
        InvalidInputError
            A field the catalogue rejects (unknown kind, negative latency, ...).

        Examples
        --------
        >>> fields = {"id": "lte", "kind": "terrestrial", "operator": "ad", "technology": "lte",
        ...           "latency_ms": 35.0}
        >>> NetworkEntry(fields=fields, layer={}).network().latency_ms
        35.0
        >>> NetworkEntry(fields={**fields, "kind": "carrier pigeon"}, layer={}).network()
        Traceback (most recent call last):
        ...
        commap.errors.InvalidInputError: network 'lte': 'carrier pigeon' is not a valid NetworkKind
        """
        values = {k: self.fields[k] for k in NETWORK_FIELDS if k in self.fields}
        try:
            values["kind"] = NetworkKind(values.get("kind", ""))
            return Network(**values)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"network {self.fields.get('id')!r}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (catalogue fields first, then ``layer``, ``cache``, ``measured``)."""
        out: dict[str, Any] = {k: self.fields[k] for k in NETWORK_FIELDS if k in self.fields}
        out["layer"] = dict(self.layer)
        if self.cache is not None:
            out["cache"] = self.cache
        if self.measured is not None:
            out["measured"] = dict(self.measured)
        if self.ingest is not None:
            out["ingest"] = {
                f: {"used": c.used, "dropped": dict(c.dropped)} for f, c in self.ingest.items()
            }
        return out

    @classmethod
    def _parse(cls, entry: _Fields) -> NetworkEntry:
        entry.get("id", str)
        ingest = entry.get("ingest", dict, None)
        layer = entry.get("layer", dict)
        entry.no_path_outside("layer", layer)
        cache = entry.get("cache", str, None)
        measured = entry.get("measured", dict, None)
        entry.no_path_outside("measured", measured)
        return cls(
            fields={k: entry.value[k] for k in NETWORK_FIELDS if k in entry.value},
            layer=layer,
            cache=None if cache is None else entry.inside("cache", cache),
            measured=measured,
            ingest=None if ingest is None else IngestCount.parse_report(ingest, entry.source),
        )


@dataclass(frozen=True)
class IngestCount:
    """How many records of one field a map build used, and how many it dropped, by reason.

    Examples
    --------
    >>> report = IngestCount.parse_report({"rsrp_dbm": {"used": 3, "dropped": {"nan": 1}}}, "m")
    >>> report["rsrp_dbm"].used, dict(report["rsrp_dbm"].dropped)
    (3, {'nan': 1})
    >>> IngestCount.parse_report({"rsrp_dbm": {"used": -1}}, "m")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: m: ingest of 'rsrp_dbm' is not {used: n, dropped: {reason: n}}
    >>> IngestCount.parse_report({}, "m")
    {}
    """

    used: int
    dropped: Mapping[str, int]

    @classmethod
    def parse_report(cls, report: Mapping[str, Any], source: str) -> dict[str, IngestCount]:
        """``{field: {"used": n, "dropped": {reason: n}}}`` as typed counts (checked)."""
        out = {}
        for name, counts in report.items():
            dropped = counts.get("dropped", {}) if isinstance(counts, dict) else None
            used = counts.get("used") if isinstance(counts, dict) else None
            ok = (
                isinstance(used, int)
                and not isinstance(used, bool)
                and used >= 0
                and isinstance(dropped, dict)
                and all(isinstance(v, int) and v >= 0 for v in dropped.values())
            )
            if not ok:
                raise InvalidInputError(
                    f"{source}: ingest of {name!r} is not {{used: n, dropped: {{reason: n}}}}"
                )
            out[str(name)] = cls(used=int(used), dropped=dict(dropped))  # type: ignore[arg-type]
        return out


@dataclass(frozen=True)
class RoadsSource:
    """The road graph of a built map: its directory and where it came from."""

    dir: str
    source: str
    attribution: str
    nodes: int
    edges: int
    edge_length_km: float

    @classmethod
    def _parse(cls, roads: _Fields) -> RoadsSource:
        return cls(
            dir=roads.inside("dir", roads.get("dir", str)),
            source=roads.get("source", str, ""),
            attribution=roads.get("attribution", str, ""),
            nodes=roads.get("nodes", int, 0),
            edges=roads.get("edges", int, 0),
            edge_length_km=roads.number("edge_length_km", 0.0),
        )


@dataclass(frozen=True)
class TerrainSource:
    """The terrain tiles of a built map (paths relative to the map directory)."""

    files: tuple[str, ...]
    attribution: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"files": list(self.files), "attribution": self.attribution}


@dataclass(frozen=True)
class BuildInputs:
    """Provenance: the spec file and every input file it names, with SHA-256 checksums."""

    spec_file: str
    spec_sha256: str
    files: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``{"spec": {"file", "sha256"}, "files": {...}}``)."""
        return {
            "spec": {"file": self.spec_file, "sha256": self.spec_sha256},
            "files": dict(self.files),
        }


def _optional_number(value: float | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """Everything ``manifest.json`` of a built map records."""

    name: str
    commap_version: str
    bbox: tuple[float, float, float, float]
    segment_m: float
    networks: tuple[NetworkEntry, ...]
    title: str = ""
    description: str = ""
    seed: int = 0
    default_departure_s: float | None = None
    roads: RoadsSource | None = None
    terrain: TerrainSource | None = None
    attribution: tuple[str, ...] = ()
    inputs: BuildInputs | None = None
    build_key: str | None = None
    edges: Mapping[str, Any] | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    format: str = FORMAT

    @property
    def network_ids(self) -> tuple[str, ...]:
        """Network ids in manifest (catalogue) order."""
        return tuple(n.id for n in self.networks)

    @property
    def display_title(self) -> str:
        """The title, or the name when the map has none."""
        return self.title or self.name

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, keys in the order ``manifest.json`` has always had them."""
        out: dict[str, Any] = {
            "format": self.format,
            "commap_version": self.commap_version,
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "bbox": list(self.bbox),
            "segment_m": self.segment_m,
            "seed": self.seed,
            "default_departure_s": self.default_departure_s,
            "roads": None if self.roads is None else dict(vars(self.roads)),
            "terrain": None if self.terrain is None else self.terrain.to_dict(),
            "networks": [n.to_dict() for n in self.networks],
            "attribution": list(self.attribution),
        }
        if self.inputs is not None:
            out["inputs"] = self.inputs.to_dict()
        if self.build_key is not None:
            out["build_key"] = self.build_key
        if self.edges is not None:
            out["edges"] = dict(self.edges)
        out["files"] = dict(self.files)
        return out

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the manifest to ``path`` atomically (indented JSON, trailing newline)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read and validate a manifest.

        Raises
        ------
        InvalidInputError
            The file is unreadable or not JSON ("unreadable manifest"), or a key is missing, has
            the wrong type or an invalid value (the message names the file and the key).
        """
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path}: unreadable manifest ({exc})") from None
        return cls.from_dict(payload, source=str(path))

    @classmethod
    def from_dict(cls, payload: Any, *, source: str = MANIFEST) -> Manifest:
        """Validate the JSON form; ``source`` names the file in error messages.

        Examples
        --------
        >>> Manifest.from_dict({"format": "commap-map/1", "name": "x", "commap_version": "0",
        ...                     "bbox": [0, 0, 1, 1], "segment_m": 0, "networks": []})
        Traceback (most recent call last):
        ...
        commap.errors.InvalidInputError: manifest.json: key 'segment_m' must be above 0, got 0.0
        >>> Manifest.from_dict({"format": "commap-map/1", "name": "../../evil", "segment_m": 50})
        Traceback (most recent call last):
        ...
        commap.errors.InvalidInputError: manifest.json: key 'name' must be a map identifier ([a-z0-9_-]+), got '../../evil'
        """
        top = _Fields(source, payload)
        if top.get("format", str) != FORMAT:
            raise top.fail("format", f"must be {FORMAT!r}")
        segment_m = top.number("segment_m")
        if segment_m <= 0:
            raise top.fail("segment_m", f"must be above 0, got {segment_m}")
        roads = top.child("roads", None)
        terrain = top.child("terrain", None)
        files = top.string_map("files", {})
        inputs = top.child("inputs", None)
        name = top.get("name", str)
        if not MAP_NAME.match(name):  # it names directories and store partitions: never a path
            raise top.fail("name", f"must be a map identifier ([a-z0-9_-]+), got {name!r}")
        return cls(
            format=FORMAT,
            name=name,
            commap_version=top.get("commap_version", str),
            title=top.get("title", str, ""),
            description=top.get("description", str, ""),
            bbox=_bbox(top),
            segment_m=segment_m,
            seed=top.get("seed", int, 0),
            default_departure_s=_optional_number(
                top.get("default_departure_s", (int, float), None)
            ),
            roads=None if roads is None else RoadsSource._parse(roads),
            terrain=None if terrain is None else _terrain(terrain),
            networks=_networks(top),
            attribution=top.strings("attribution", []),
            inputs=None if inputs is None else _inputs(inputs),
            build_key=top.get("build_key", str, None),
            edges=top.get("edges", dict, None),
            files={top.inside("files", rel): digest for rel, digest in files.items()},
        )


def _bbox(top: _Fields) -> tuple[float, float, float, float]:
    values = top.get("bbox", list)
    ok = len(values) == 4 and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )
    if not ok or not (values[0] < values[2] and values[1] < values[3]):
        raise top.fail("bbox", "must be [lon_min, lat_min, lon_max, lat_max]")
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))


def _terrain(terrain: _Fields) -> TerrainSource:
    files = tuple(terrain.inside("files", f) for f in terrain.strings("files"))
    return TerrainSource(files, terrain.get("attribution", str, ""))


def _networks(top: _Fields) -> tuple[NetworkEntry, ...]:
    items = top.get("networks", list)
    entries = tuple(
        NetworkEntry._parse(_Fields(top.source, item, f"networks[{i}]"))
        for i, item in enumerate(items)
    )
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if entry.id in seen:
            raise top.fail(f"networks[{i}].id", f"repeats network id {entry.id!r}")
        seen.add(entry.id)
    return entries


def _inputs(inputs: _Fields) -> BuildInputs:
    spec = inputs.child("spec")
    assert spec is not None
    return BuildInputs(
        spec_file=spec.get("file", str),
        spec_sha256=spec.get("sha256", str),
        files=inputs.string_map("files", {}),
    )


def resolve_map_dir(name_or_path: str | Path, settings: Settings | None = None) -> Path:
    """Resolve a map name (a directory under the maps directory) or a path to a built map.

    A name resolves to ``<maps_dir>/<name>/built`` (or ``<maps_dir>/<name>`` if that holds a
    manifest). Names are matched against the directory listing, never joined into a path
    unchecked.

    Raises
    ------
    MapNotFoundError
        If nothing built is found.

    Examples
    --------
    >>> resolve_map_dir("no/such/map")
    Traceback (most recent call last):
    ...
    commap.errors.MapNotFoundError: no/such/map is not a built map (no manifest.json)
    """
    settings = settings or Settings()
    text = str(name_or_path)
    if MAP_NAME.match(text):
        known = (
            {p.name for p in settings.maps_dir.iterdir() if p.is_dir()}
            if settings.maps_dir.is_dir()
            else set()
        )
        if text in known:
            base = settings.maps_dir / text
            for candidate in (base / "built", base):
                if (candidate / MANIFEST).is_file():
                    return candidate
            raise MapNotFoundError(
                f"map {text!r} is not built: run `commap build-map {base / 'map.toml'} --out {base / 'built'}`"
            )
        if not Path(text).is_dir():
            names = sorted(known)
            raise MapNotFoundError(
                f"unknown map {text!r}; known maps: {', '.join(names) or 'none'}"
            )
    path = Path(text)
    for candidate in (path, path / "built"):
        if _is_file(candidate / MANIFEST):
            return candidate
    shown = text if len(text) <= 200 else f"{text[:200]}... ({len(text)} characters)"
    raise MapNotFoundError(f"{shown} is not a built map (no {MANIFEST})")


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for names the OS refuses (too long, NUL, no permission)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
