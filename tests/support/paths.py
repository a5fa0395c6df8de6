"""Where the repository, its maps and the test data are, wherever a test module sits."""

from __future__ import annotations

from pathlib import Path

__all__ = ["MAPS", "REPO", "TEST_DATA"]

REPO = Path(__file__).resolve().parents[2]
MAPS = REPO / "maps"
TEST_DATA = REPO / "tests" / "data"
