"""commap: communication maps for connected vehicles and network-switch planning.

The package is a plain library: no gRPC, CLI or dask imports outside their own modules
(``commap/cli.py``, ``commap/map/executors.py`` imports dask lazily, generated ``commap/v1``).
The package itself exports the error tree of :mod:`commap.errors`.
"""

from commap import errors
from commap.errors import *  # noqa: F403 - the error tree is the package's public surface

__all__ = errors.__all__
__version__ = "0.1.0"
