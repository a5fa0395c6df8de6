"""Generate the Python gRPC stubs (``commap/v1/*_pb2*.py(i)``) from ``protos/`` with grpc_tools.

Run as ``python -m server.protogen`` (``make proto``). The stubs are build output: they are not
committed (``commap/v1/`` is git-ignored) and are imported as ``commap.v1.commap_service_pb2``.
"""

from __future__ import annotations

import logging
import sys
from importlib import resources
from pathlib import Path

__all__ = ["PROTO_ROOT", "STUB_DIR", "generate", "stubs_are_current"]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO / "protos"
STUB_DIR = REPO / "commap" / "v1"
_INIT = '"""Generated gRPC stubs (make proto). Do not edit."""\n'


def _protos() -> list[Path]:
    return sorted((PROTO_ROOT / "commap" / "v1").glob("*.proto"))


def stubs_are_current() -> bool:
    """True when every proto has stubs newer than itself.

    Examples
    --------
    >>> isinstance(stubs_are_current(), bool)
    True
    """
    for proto in _protos():
        stub = STUB_DIR / f"{proto.stem}_pb2.py"
        if not stub.is_file() or stub.stat().st_mtime < proto.stat().st_mtime:
            return False
    return (STUB_DIR / "__init__.py").is_file()


def generate() -> list[Path]:
    """Run ``grpc_tools.protoc`` on every proto under ``protos/commap/v1``.

    Returns
    -------
    list of Path
        The generated files.

    Raises
    ------
    RuntimeError
        If protoc reports an error (its message is on stderr).
    """
    from grpc_tools import protoc  # build-time tool: imported only when generating

    protos = _protos()
    if not protos:
        raise RuntimeError(f"no .proto files under {PROTO_ROOT / 'commap' / 'v1'}")
    well_known = resources.files("grpc_tools") / "_proto"
    STUB_DIR.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={REPO}",
        f"--pyi_out={REPO}",
        f"--grpc_python_out={REPO}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status}")
    (STUB_DIR / "__init__.py").write_text(_INIT, encoding="utf-8")
    out = sorted(STUB_DIR.glob("*_pb2*.py*"))
    log.info("generated %d stub files in %s", len(out), STUB_DIR)
    return out


def _main() -> int:
    """Command-line entry point: generate and list the stubs."""
    for path in generate():
        print(path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
