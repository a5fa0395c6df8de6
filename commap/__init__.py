"""commap: communication maps for connected vehicles and network-switch planning.

The package is a plain library: no gRPC, CLI or dask imports outside their own modules
(``commap/cli.py``, ``commap/map/executors.py`` imports dask lazily, generated ``commap/v1``).
"""

from commap.errors import (
    CommapError,
    InvalidInputError,
    MapNotFoundError,
    NoFeasiblePlanError,
    SolverTimeoutError,
)

__all__ = [
    "CommapError",
    "InvalidInputError",
    "MapNotFoundError",
    "NoFeasiblePlanError",
    "SolverTimeoutError",
]
__version__ = "0.1.0"
