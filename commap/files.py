"""The one way commap writes files: atomically and durably, plus file checksums.

Every writer in commap goes through this module, so every file a user or a server reads is either
the complete old version or the complete new one, never half of either, even after a crash or a
power cut:

1. the content goes to a temporary file in the *same directory* (a rename across file systems
   would not be atomic);
2. the temporary file is flushed and ``fsync``-ed;
3. ``os.replace`` renames it over the target (atomic on POSIX);
4. the directory is ``fsync``-ed, so the rename itself survives a crash.

Writers that need a path rather than bytes (GeoParquet, GeoPackage, PNG) use :func:`atomic_path`;
the rest use :func:`write_bytes_atomic`, :func:`write_text_atomic` or :func:`write_json_atomic`.

Examples
--------
>>> import json, tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> write_json_atomic(folder / "a.json", {"b": 1})
>>> json.loads((folder / "a.json").read_text())
{'b': 1}
>>> with atomic_path(folder / "c.txt") as tmp:
...     _ = tmp.write_text("done")
>>> (folder / "c.txt").read_text()
'done'
>>> sorted(p.name for p in folder.iterdir())  # no temporary file is left behind
['a.json', 'c.txt']
>>> sha256_file(folder / "c.txt")[:12]
'a4c3ed04a95a'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "fsync_dir",
    "sha256_file",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

_CHUNK_BYTES = 1 << 20


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush a directory's entries to disk (a rename is durable only after this).

    Parameters
    ----------
    directory : path
        An existing directory.

    Examples
    --------
    >>> import tempfile
    >>> fsync_dir(tempfile.gettempdir())
    """
    fd = os.open(os.fspath(directory), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary_name(target: Path, keep_suffix: bool) -> Path:
    # the pid lets a cleaner tell a crashed writer's leftovers from a running writer's file
    token = f"tmp-{os.getpid()}-{secrets.token_hex(4)}"
    if keep_suffix:
        return target.with_name(f".{target.stem}.{token}{target.suffix}")
    return target.with_name(f".{target.name}.{token}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The caller writes the whole file to the yielded path (with any library). When the block ends
    without an exception the file is fsync-ed, renamed over ``path`` and the directory fsync-ed;
    on an exception the temporary file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : path
        The target file; its directory must exist.
    keep_suffix : bool
        Give the temporary file the target's suffix (for writers that choose the format from it,
        such as matplotlib or pyogrio).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "plot.png"
    >>> with atomic_path(target, keep_suffix=True) as tmp:
    ...     _ = tmp.write_bytes(b"png")
    ...     print(tmp.suffix)
    .png
    >>> with atomic_path(target) as tmp:  # nothing written: the target is not created
    ...     pass
    Traceback (most recent call last):
    ...
    FileNotFoundError: atomic write of plot.png: nothing was written to the temporary file
    """
    target = Path(path)
    tmp = _temporary_name(target, keep_suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(
                f"atomic write of {target.name}: nothing was written to the temporary file"
            )
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "empty.bin"
    >>> write_bytes_atomic(target, b"")
    >>> target.read_bytes()
    b''
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically and durably (no newline translation).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "a.csv"
    >>> write_text_atomic(target, "x\\r\\ny\\n")
    >>> target.read_bytes()
    b'x\\r\\ny\\n'
    """
    write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(
    path: str | os.PathLike[str], payload: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> None:
    """Write ``payload`` as JSON (UTF-8, trailing newline) atomically and durably.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "m.json"
    >>> write_json_atomic(target, [], indent=None)
    >>> target.read_text()
    '[]\\n'
    """
    text = json.dumps(payload, indent=indent, sort_keys=sort_keys, ensure_ascii=False) + "\n"
    write_text_atomic(path, text)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "empty"
    >>> _ = target.write_bytes(b"")
    >>> sha256_file(target)
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
