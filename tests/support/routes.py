"""Real routes for tests and benchmarks that need a stretch the map knows nothing about.

:func:`cork_drive_with_blind_leg` is the held-out Cork drive test (``tests/data/measured``)
followed by a straight leg to the north-west corner of the Cork map, where no drive test went:
the measured network's learned map is ``unknown`` there, the modelled 3G networks are not.

Examples
--------
>>> route = cork_drive_with_blind_leg()
>>> bool(route.lon[-1] < -8.57), len(route.lon) > 100
(True, True)
"""

from __future__ import annotations

import numpy as np

from commap.geo.corridor import Route, route_from_polyline
from commap.geo.routefile import read_route_file
from tests.support.paths import TEST_DATA

__all__ = ["CORK_FAR_CORNER", "cork_drive_with_blind_leg"]

# north-west corner of the Cork map: no drive test within kilometres (lon, lat)
CORK_FAR_CORNER = (-8.574, 51.959)


def cork_drive_with_blind_leg(*, leg_points: int = 40) -> Route:
    """The held-out Cork drive, then ``leg_points`` points on to :data:`CORK_FAR_CORNER`."""
    drive = read_route_file(TEST_DATA / "measured" / "cork_heldout_route.csv")
    leg = np.linspace(0.0, 1.0, leg_points + 1)[1:]
    lon = np.r_[drive.lon, drive.lon[-1] + leg * (CORK_FAR_CORNER[0] - drive.lon[-1])]
    lat = np.r_[drive.lat, drive.lat[-1] + leg * (CORK_FAR_CORNER[1] - drive.lat[-1])]
    return route_from_polyline(lon, lat, name="cork drive + unmeasured leg")
