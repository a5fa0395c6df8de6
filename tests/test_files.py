"""commap.files: atomic writes leave the old file or the new one, never a half or a temporary."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from commap.files import (
    atomic_path,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_exception_inside_atomic_path_keeps_old_content_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "table.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer failed"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the new")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["table.parquet"]


def test_exception_before_first_write_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "new.json"
    with pytest.raises(KeyError), atomic_path(target, keep_suffix=True):
        raise KeyError("x")
    assert _names(tmp_path) == []


def test_atomic_path_replaces_and_keeps_suffix(tmp_path: Path) -> None:
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")
    with atomic_path(target, keep_suffix=True) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == ["plot.png"]


def test_json_round_trip(tmp_path: Path) -> None:
    payload = {"name": "andorra", "bbox": [1.4, 42.38, 1.8, 42.68], "attribution": ["© OSM"]}
    target = tmp_path / "m.json"
    write_json_atomic(target, payload)
    assert json.loads(target.read_text(encoding="utf-8")) == payload
    assert target.read_text(encoding="utf-8").endswith("}\n")


def test_text_and_bytes_are_written_verbatim(tmp_path: Path) -> None:
    write_text_atomic(tmp_path / "a.csv", "x\r\ny\n")
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "a.csv").read_bytes() == b"x\r\ny\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    assert sha256_file(tmp_path / "b.bin") == hashlib.sha256(b"\x00\xff").hexdigest()
