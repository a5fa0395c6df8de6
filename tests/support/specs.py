"""Map specs (``map.toml``) for tests and benchmarks, written in one place.

Two kinds of spec are needed:

* the committed default map's spec (``maps/andorra/map.toml``), renamed or with its data files
  referenced from elsewhere: :func:`default_spec`, and parsed: :func:`read_default_spec`;
* a small spec over a sub-region with the four kinds of network the default map has (two
  modelled terrestrial layers of one operator, Starlink, GEO), on the default map's data files
  unless told otherwise: :func:`subregion_spec`.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> spec = subregion_spec(Path(tempfile.mkdtemp()) / "sub")
>>> sorted(n["id"] for n in read_spec_toml(spec)["networks"])
['ad-lte', 'ad-nr', 'geo', 'starlink']
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.paths import MAPS, TEST_DATA

__all__ = [
    "DEFAULT_MAP",
    "HAMBURG_EXTRACT",
    "SUBREGION_BBOX",
    "default_spec",
    "hamburg_spec",
    "read_default_spec",
    "read_spec_toml",
    "subregion_spec",
]

DEFAULT_MAP = MAPS / "andorra"
_DATA = DEFAULT_MAP / "data"
# Andorra la Vella and Escaldes: 814 directed edges, 150 edge-km (lon_min, lat_min, lon_max, lat_max)
SUBREGION_BBOX = (1.50, 42.49, 1.56, 42.53)

_SUBREGION = """name = "{name}"
{title}bbox = {bbox}
segment_m = 50.0
seed = {seed}
default_departure = "2025-01-23T12:00:00Z"

[roads]
file = "{roads}"
{terrain}
[[networks]]
id = "{operator}-lte"
kind = "terrestrial"
operator = "{operator}"
technology = "lte"
latency_ms = 35.0
frequency_mhz = 800.0
[networks.layer]
type = "terrestrial"
sites = "generated"
{country}site_spacing_m = 3000.0

[[networks]]
id = "{operator}-nr"
kind = "terrestrial"
operator = "{operator}"
technology = "nr"
latency_ms = 20.0
frequency_mhz = 3500.0
[networks.layer]
type = "terrestrial"
sites = "generated"
{country}site_spacing_m = 1500.0
tx_power_dbm = 43.0

[[networks]]
id = "starlink"
kind = "leo"
operator = "starlink"
technology = "leo"
latency_ms = 45.0
cost_per_mb = 0.002
min_elevation_deg = 25.0
[networks.layer]
type = "leo"
tle_file = "{tle}"

[[networks]]
id = "geo"
kind = "geo"
operator = "geo"
technology = "geo"
latency_ms = 600.0
cost_per_mb = 0.01
min_elevation_deg = 10.0
orbital_longitude_deg = 9.0
[networks.layer]
type = "geo"
"""


def subregion_spec(
    map_dir: Path,
    *,
    name: str = "andorra-sub",
    bbox: Sequence[float] = SUBREGION_BBOX,
    roads: Path = _DATA / "andorra.osm.pbf",
    terrain: Path | None = _DATA / "N42E001.hgt.zip",
    tle: Path = _DATA / "starlink.txt",
    seed: int = 7,
    operator: str = "ad",
    country: str | None = "AD",
    title: str | None = None,
) -> Path:
    """Write a four-network spec over ``bbox`` to ``map_dir/map.toml`` (data files by absolute path).

    Parameters
    ----------
    map_dir
        Folder of the spec (created if missing).
    name, title
        The map's name and title (no title when ``None``).
    bbox
        ``(lon_min, lat_min, lon_max, lat_max)`` in degrees (WGS84).
    roads, terrain, tle
        OSM extract, SRTM tile (``None``: no terrain section) and Starlink TLE file.
    seed
        The map's random seed (generated sites, shadowing).
    operator, country
        Operator of the two terrestrial layers (network ids ``{operator}-lte`` and
        ``{operator}-nr``) and the country code their generated sites use (``None``: none).

    Returns
    -------
    Path
        The written ``map.toml``.

    Examples
    --------
    >>> import tempfile
    >>> spec = subregion_spec(Path(tempfile.mkdtemp()), bbox=(1.50, 42.49, 1.52, 42.50))
    >>> read_spec_toml(spec)["bbox"]
    [1.5, 42.49, 1.52, 42.5]
    >>> monaco = subregion_spec(Path(tempfile.mkdtemp()), terrain=None, operator="op", country=None)
    >>> "terrain" in read_spec_toml(monaco), read_spec_toml(monaco)["networks"][1]["id"]
    (False, 'op-nr')
    """
    text = _SUBREGION.format(
        name=name,
        title=f'title = "{title}"\n' if title is not None else "",
        bbox=[float(v) for v in bbox],
        seed=seed,
        roads=roads,
        terrain=f'\n[terrain]\nfiles = ["{terrain}"]\n' if terrain is not None else "",
        operator=operator,
        country=f'country = "{country}"\n' if country is not None else "",
        tle=tle,
    )
    return _write(map_dir, text)


def default_spec(map_dir: Path, *, name: str = "andorra", data_dir: Path | None = _DATA) -> Path:
    """Write the default map's committed spec, renamed to ``name``, to ``map_dir/map.toml``.

    Parameters
    ----------
    map_dir
        Folder of the spec (created if missing).
    name
        The map's name.
    data_dir
        Where its data files are (absolute paths in the spec; default ``maps/andorra/data``);
        ``None`` keeps the relative ``data/...`` paths, for a spec folder with its own ``data/``.

    Returns
    -------
    Path
        The written ``map.toml``.

    Examples
    --------
    >>> import tempfile
    >>> spec = read_spec_toml(default_spec(Path(tempfile.mkdtemp()), name="copy"))
    >>> spec["name"], Path(spec["roads"]["file"]).is_file()
    ('copy', True)
    """
    text = (DEFAULT_MAP / "map.toml").read_text(encoding="utf-8")
    text = text.replace('name = "andorra"', f'name = "{name}"', 1)
    if data_dir is not None:
        text = text.replace('"data/', f'"{data_dir}/')
    return _write(map_dir, text)


def read_spec_toml(path: Path) -> dict[str, Any]:
    """A spec file parsed as plain TOML (no validation: for looking at what a test wrote)."""
    return tomllib.loads(path.read_text(encoding="utf-8"))


def read_default_spec() -> dict[str, Any]:
    """The committed default map's spec as plain TOML.

    Examples
    --------
    >>> [n["id"] for n in read_default_spec()["networks"]][:2]
    ['ad-lte', 'ad-nr']
    """
    return read_spec_toml(DEFAULT_MAP / "map.toml")


def _write(map_dir: Path, text: str) -> Path:
    map_dir.mkdir(parents=True, exist_ok=True)
    path = map_dir / "map.toml"
    path.write_text(text, encoding="utf-8")
    return path


HAMBURG_EXTRACT = TEST_DATA / "measured_multi" / "hamburg_bremen_lte_extract.csv.gz"
_HAMBURG_OPERATORS = (
    ("de-telekom", "Telekom"),
    ("de-vodafone", "Vodafone"),
    ("de-telefonica", "Telefonica"),
)


def hamburg_spec(
    map_dir: Path, *, name: str = "hamburg", window: tuple[str, str] | None = None
) -> Path:
    """A measured-only map of the Hamburg - Bremen extract (three operators, both days).

    ``window``: only the records from ``start`` to before ``end`` (ISO times), e.g. one day.

    Examples
    --------
    >>> import tempfile
    >>> spec = hamburg_spec(Path(tempfile.mkdtemp()) / "hamburg")
    >>> [n["layer"]["network_id"] for n in read_spec_toml(spec)["networks"]]
    ['de-telekom', 'de-vodafone', 'de-telefonica']
    """
    limits = f'start = "{window[0]}"\nend = "{window[1]}"\n' if window else ""
    networks = "".join(
        f"""
[[networks]]
id = "{nid}"
kind = "terrestrial"
operator = "{nid}"
technology = "lte"
display_name = "{label} LTE (measured, Bremen, Sep 2021)"
latency_ms = 35.0
[networks.layer]
type = "measured"
format = "records"
files = ["{HAMBURG_EXTRACT.as_posix()}"]
network_id = "{nid}"
{limits}attribution = "Drive tests: ENQT GmbH / HAW Hamburg (CC BY-NC 4.0)"
"""
        for nid, label in _HAMBURG_OPERATORS
    )
    text = f"""name = "{name}"
title = "Bremen: three operators measured on 13 and 17 Sep 2021"
bbox = [8.85, 52.99, 8.97, 53.07]
segment_m = 50.0
seed = 20210913
default_departure = "2021-09-17T12:00:00Z"
{networks}"""
    return _write(map_dir, text)
