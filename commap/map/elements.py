"""Fresh orbital elements for a built map, without rebuilding the rest.

:func:`update_elements` replaces the TLE file of one or more LEO constellations of a built map.
The new file (and its stored element table, which map loads read instead of the text) is
written under a new name and the manifest (checksums, satellite count, epoch)
then switched to it in one atomic write, so a reader sees either the old map or the new one,
never a mix; the old file is removed afterwards. Everything else of the map (roads, terrestrial
layers, the per-edge table made with the old elements) stays as built.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from commap.errors import InvalidInputError
from commap.files import sha256_file, write_bytes_atomic
from commap.map.manifest import MANIFEST, Manifest, resolve_map_dir
from commap.radio.layers.satellite import ElementTable, write_elements_beside
from commap.timeutil import format_time

__all__ = ["update_elements"]

log = logging.getLogger(__name__)


def update_elements(
    map_name_or_dir: str | os.PathLike[str],
    tle_files: Mapping[str, str | os.PathLike[str]],
) -> Manifest:
    """Load fresh TLE files into a built map (``{network id: TLE file}``).

    Returns
    -------
    Manifest
        The map's new manifest (already written).

    Raises
    ------
    InvalidInputError
        No files given, an unknown or non-LEO network, or a TLE file that does not parse.
    MapNotFoundError
        Unknown or unbuilt map.

    Examples
    --------
    >>> update_elements("andorra", {})
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: give at least one network=TLE file
    """
    if not tle_files:
        raise InvalidInputError("give at least one network=TLE file", field="tle")
    given = map_name_or_dir
    directory = resolve_map_dir(given if isinstance(given, str) else Path(given))
    manifest = Manifest.read(directory / MANIFEST)
    entries = {entry.id: entry for entry in manifest.networks}
    files = dict(manifest.files)
    replaced: list[Path] = []
    new_entries = dict(entries)
    for nid, source in tle_files.items():
        entry = entries.get(nid)
        leo = [e.id for e in manifest.networks if e.layer_type == "leo"]
        if entry is None or entry.layer_type != "leo":
            raise InvalidInputError(
                f"map {manifest.name} has no LEO network {nid!r}; its LEO networks: "
                f"{', '.join(leo) or 'none'}",
                field="tle",
            )
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"{path}: cannot read TLE file ({exc})", field="tle") from None
        elements = ElementTable.from_tle_file(path)  # raises InvalidInputError naming the file
        epoch_s = float(np.median(elements.epochs_s))
        old = str(entry.layer.get("tle_file", ""))
        old_elements = str(entry.layer.get("elements_file", ""))
        digest = sha256_file(path)
        name = f"satellite/{nid}-{digest[:12]}.tle"
        if name != old:
            write_bytes_atomic(directory / name, data)
        # the stored form of the new elements, beside them: loads read it, not the text
        stored = write_elements_beside(elements, directory / name, directory)
        for gone in (old, old_elements):
            files.pop(gone, None)
        if old in manifest.files:
            files[name] = digest
            files[stored] = sha256_file(directory / stored)
        replaced += [directory / p for p in (old, old_elements) if p and p not in (name, stored)]
        layer = {
            **entry.layer,
            "tle_file": name,
            "elements_file": stored,
            "satellites": len(elements),
        }
        new_entries[nid] = dataclasses.replace(entry, layer=layer)
        log.info("%s: %d satellites, epoch %s", nid, len(elements), format_time(epoch_s))
    updated = dataclasses.replace(
        manifest,
        networks=tuple(new_entries[e.id] for e in manifest.networks),
        files=files,
    )
    updated.write(directory / MANIFEST)  # the switch: atomic
    for path in replaced:
        path.unlink(missing_ok=True)
    return updated
