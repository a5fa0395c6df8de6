"""Configuration shared by the front doors: where maps live and library-wide defaults.

Values come from keyword arguments, else ``COMMAP_*`` environment variables, else defaults, and
are validated once when the :class:`Settings` object is made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from commap.errors import InvalidInputError

__all__ = ["DEFAULT_MAP", "REPO_DIR", "Settings", "default_maps_dir"]

DEFAULT_MAP = "andorra"
# the checkout holding this package (maps/, node_modules/ of a source install)
REPO_DIR = Path(__file__).resolve().parents[1]


def default_maps_dir() -> Path:
    """``$COMMAP_MAPS_DIR``, else the repository's ``maps/``, else ``./maps``."""
    env = os.environ.get("COMMAP_MAPS_DIR")
    if env:
        return Path(env)
    repo_maps = REPO_DIR / "maps"
    return repo_maps if repo_maps.is_dir() else Path.cwd() / "maps"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Library-wide settings.

    Parameters
    ----------
    maps_dir : Path
        Directory holding one sub-directory per map.
    default_map : str
        Map used when a request names none.
    """

    maps_dir: Path = field(default_factory=default_maps_dir)
    default_map: str = field(default_factory=lambda: os.environ.get("COMMAP_MAP", DEFAULT_MAP))

    def __post_init__(self) -> None:
        if not self.default_map:
            raise InvalidInputError("default map name must not be empty", field="default_map")
