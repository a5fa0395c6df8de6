"""Shared fixtures: the real default map (built by ``make map``) and paths to test data."""

from __future__ import annotations

from pathlib import Path

import pytest

from commap.errors import MapNotFoundError
from commap.map.build import build_map
from commap.map.comm_map import CommMap
from commap.map.manifest import resolve_map_dir
from tests.support.paths import MAPS

pytest_plugins = ("tests.support.conftest_server",)  # the real gRPC server, for tests/server


def _built(name: str, tmp_factory: pytest.TempPathFactory) -> Path:
    """The built map ``name``: the one ``make map`` made, else a fresh build in a temp dir."""
    try:
        return resolve_map_dir(name)
    except MapNotFoundError:
        return build_map(MAPS / name / "map.toml", tmp_factory.mktemp(name) / "built")


@pytest.fixture(scope="session")
def andorra_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the built default map."""
    return _built("andorra", tmp_path_factory)


@pytest.fixture(scope="session")
def andorra(andorra_dir: Path) -> CommMap:
    """The default map, loaded once per session."""
    return CommMap.load(andorra_dir)


@pytest.fixture(scope="session")
def cork_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the built Cork map (real towers and drive tests)."""
    return _built("cork", tmp_path_factory)


@pytest.fixture(scope="session")
def cork(cork_dir: Path) -> CommMap:
    """The Cork map, loaded once per session."""
    return CommMap.load(cork_dir)


@pytest.fixture(scope="session")
def indianapolis(tmp_path_factory: pytest.TempPathFactory) -> CommMap:
    """The Indianapolis map (three operators, gridded measurements), loaded once per session."""
    return CommMap.load(_built("indianapolis", tmp_path_factory))


@pytest.fixture(scope="session")
def hamburg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built measured-only map of the Hamburg - Bremen extract (spec beside the built map)."""
    from tests.support.specs import hamburg_spec

    spec = hamburg_spec(tmp_path_factory.mktemp("maps") / "hamburg")
    return build_map(spec, spec.parent / "built")
