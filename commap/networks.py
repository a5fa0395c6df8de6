"""Network catalogue: the radio networks a vehicle may use.

A :class:`Network` is one selectable link (an operator's LTE layer, a LEO constellation, a GEO
satellite). Handover behaviour between two networks depends on their kinds and operators; see
:func:`switch_kind`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from commap.errors import InvalidInputError

__all__ = [
    "MCC_BY_COUNTRY",
    "Network",
    "NetworkCatalogue",
    "NetworkKind",
    "SwitchKind",
    "switch_kind",
]


# ISO 3166 alpha-2 country -> mobile country code (ITU-T E.212), for the site tables maps write.
MCC_BY_COUNTRY: dict[str, int] = {
    "AD": 213,
    "AT": 232,
    "BE": 206,
    "CA": 302,
    "CH": 228,
    "DE": 262,
    "DK": 238,
    "ES": 214,
    "FR": 208,
    "GB": 234,
    "IE": 272,
    "IT": 222,
    "LU": 270,
    "MC": 212,
    "NL": 204,
    "NO": 242,
    "PT": 268,
    "SE": 240,
    "US": 310,
}


class NetworkKind(StrEnum):
    """Radio domain of a network."""

    TERRESTRIAL = "terrestrial"
    LEO = "leo"
    GEO = "geo"


class SwitchKind(StrEnum):
    """Kind of a network switch, ordered roughly by cost."""

    NONE = "none"
    INTRA_OPERATOR = "intra_operator"  # same operator, other technology/layer
    INTER_OPERATOR = "inter_operator"  # other terrestrial operator
    TERRESTRIAL_LEO = "terrestrial_leo"
    TERRESTRIAL_GEO = "terrestrial_geo"
    SATELLITE_SATELLITE = "satellite_satellite"


@dataclass(frozen=True, kw_only=True)
class Network:
    """One selectable network.

    Parameters
    ----------
    id : str
        Stable identifier, e.g. ``"ad-lte"`` or ``"starlink"``.
    kind : NetworkKind
        Terrestrial, LEO or GEO.
    operator : str
        Operator or constellation owner; handovers within one operator are cheaper.
    technology : str
        ``"lte"``, ``"nr"``, ``"leo"``, ``"geo"``, ...
    latency_ms : float
        Typical round-trip latency of the network.
    cost_per_mb : float
        Data cost per megabyte (0 for terrestrial home networks).
    frequency_mhz : float
        Carrier frequency (terrestrial path loss); 0 for satellites.
    min_elevation_deg : float
        Minimum elevation for a satellite to be usable (Starlink 25 deg).
    tle_file : str
        For LEO: TLE file name relative to the map directory.
    orbital_longitude_deg : float
        For GEO: sub-satellite longitude.
    display_name : str
        Human readable name.
    params : Mapping[str, Any]
        Extra source-specific parameters (kept in the manifest).
    """

    id: str
    kind: NetworkKind
    operator: str
    technology: str
    latency_ms: float
    cost_per_mb: float = 0.0
    frequency_mhz: float = 0.0
    min_elevation_deg: float = 0.0
    tle_file: str = ""
    orbital_longitude_deg: float = 0.0
    display_name: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id or any(c.isspace() for c in self.id):
            raise InvalidInputError(f"network id {self.id!r} must be non-empty without spaces")
        if self.latency_ms < 0 or self.cost_per_mb < 0:
            raise InvalidInputError(f"network {self.id}: latency and cost must be >= 0")

    @property
    def is_satellite(self) -> bool:
        """True for LEO and GEO networks."""
        return self.kind is not NetworkKind.TERRESTRIAL


def switch_kind(a: Network, b: Network) -> SwitchKind:
    """Classify a switch from network ``a`` to network ``b``.

    Examples
    --------
    >>> lte = Network(id="x-lte", kind=NetworkKind.TERRESTRIAL, operator="x",
    ...               technology="lte", latency_ms=40)
    >>> switch_kind(lte, lte)
    <SwitchKind.NONE: 'none'>
    """
    if a.id == b.id:
        return SwitchKind.NONE
    if a.is_satellite and b.is_satellite:
        return SwitchKind.SATELLITE_SATELLITE
    if NetworkKind.GEO in (a.kind, b.kind):
        return SwitchKind.TERRESTRIAL_GEO
    if NetworkKind.LEO in (a.kind, b.kind):
        return SwitchKind.TERRESTRIAL_LEO
    if a.operator == b.operator:
        return SwitchKind.INTRA_OPERATOR
    return SwitchKind.INTER_OPERATOR


class NetworkCatalogue(Mapping[str, Network]):
    """Ordered, immutable set of networks indexed by id.

    The order is the column order of every quality matrix built from this catalogue.

    Examples
    --------
    >>> NetworkCatalogue([]).ids
    ()
    """

    def __init__(self, networks: Iterable[Network]) -> None:
        self._networks: tuple[Network, ...] = tuple(networks)
        self._by_id = {n.id: n for n in self._networks}
        if len(self._by_id) != len(self._networks):
            raise InvalidInputError("duplicate network id in catalogue")

    def __getitem__(self, network_id: str) -> Network:
        try:
            return self._by_id[network_id]
        except KeyError:
            raise InvalidInputError(
                f"unknown network {network_id!r}; known: {', '.join(self.ids)}", field="network_id"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._networks)

    @property
    def ids(self) -> tuple[str, ...]:
        """Network ids in column order."""
        return tuple(n.id for n in self._networks)

    @property
    def networks(self) -> tuple[Network, ...]:
        """Networks in column order."""
        return self._networks

    def index(self, network_id: str) -> int:
        """Column index of ``network_id``."""
        return self.ids.index(self[network_id].id)
