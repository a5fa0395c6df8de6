"""Array type aliases shared by every module (numpy arrays of one dtype).

Examples
--------
>>> import numpy as np
>>> values: FloatArray = np.zeros(0)
>>> values.dtype
dtype('float64')
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

__all__ = ["BoolArray", "FloatArray", "IntArray"]

FloatArray: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]
BoolArray: TypeAlias = NDArray[np.bool_]
