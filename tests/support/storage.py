"""Storage that cannot take writes, for real server processes: read-only or full directories.

Linux only: the server runs in its own mount namespace (``unshare --mount --map-root-user``),
where its measurements directory is remounted read-only or replaced by a small tmpfs. Nothing
changes outside that namespace, and the tests need no privileges beyond user namespaces (as
root, permission bits alone would not stop a write).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

_READ_ONLY = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
_FULL = 'mount -t tmpfs -o size="$1" commap-full "$0" && shift && exec "$@"'


def _unshare() -> tuple[str, ...]:
    return ("unshare", "--mount", "--map-root-user", "sh", "-c")


def mount_namespaces_available() -> bool:
    """True where a process may mount file systems in a private mount namespace."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [*_unshare(), "mount -t tmpfs commap-probe /mnt 2>/dev/null || mount -t tmpfs x /tmp"],
        capture_output=True,
        check=False,
        timeout=30,
    )
    return probe.returncode == 0


def require_mount_namespaces() -> None:
    """Skip the calling test where private mount namespaces are not available."""
    import pytest

    if not mount_namespaces_available():
        pytest.skip("no private mount namespaces (unshare --mount --map-root-user) here")


def read_only(directory: Path) -> tuple[str, ...]:
    """A server wrapper that sees ``directory`` (which must exist) read-only."""
    return (*_unshare(), _READ_ONLY, str(directory))


def full(directory: Path, size_bytes: int) -> tuple[str, ...]:
    """A server wrapper that sees ``directory`` (which must exist) as an empty file system of
    ``size_bytes``: writes beyond it fail with ENOSPC."""
    return (*_unshare(), _FULL, str(directory), str(size_bytes))
