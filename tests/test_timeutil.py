"""Times in and out: ISO 8601 with ``Z`` or an offset, naive times as UTC, epoch seconds, the
years 1..9999 UTC that ``datetime`` and protobuf ``Timestamp`` can hold, and the round trip."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commap.errors import InvalidInputError
from commap.timeutil import format_time, parse_time
from tests.support.specs import read_default_spec

DEPARTURE_S = 1_737_633_600.0  # 2025-01-23T12:00:00Z, the default map's departure
FIRST_S = -62_135_596_800.0  # 0001-01-01T00:00:00Z
LAST_S = 253_402_300_799.0  # 9999-12-31T23:59:59Z


@pytest.mark.parametrize(
    "text",
    [
        "2025-01-23T12:00:00Z",
        "2025-01-23T12:00:00z",
        "2025-01-23T12:00:00+00:00",
        "2025-01-23T13:00:00+01:00",  # Andorra in winter
        "2025-01-23T07:00:00-05:00",  # Indianapolis
        "2025-01-23T17:30:00+05:30",
        "2025-01-23 12:00:00Z",
        "2025-01-23T12:00:00.000Z",
        "  2025-01-23T12:00:00Z  ",
    ],
)
def test_iso_with_zone_is_the_same_instant(text: str) -> None:
    assert parse_time(text) == DEPARTURE_S


def test_naive_time_is_utc() -> None:
    assert parse_time("2025-01-23T12:00:00") == DEPARTURE_S
    assert parse_time("2025-01-23") == DEPARTURE_S - 12 * 3600
    assert parse_time(datetime(2025, 1, 23, 12)) == DEPARTURE_S


def test_aware_datetime_keeps_its_offset() -> None:
    paris = timezone(timedelta(hours=1))
    assert parse_time(datetime(2025, 1, 23, 13, tzinfo=paris)) == DEPARTURE_S
    assert parse_time(datetime(2025, 1, 23, 12, tzinfo=UTC)) == DEPARTURE_S


@pytest.mark.parametrize(
    ("value", "expected_s"),
    [
        (DEPARTURE_S, DEPARTURE_S),
        (1_737_633_600, DEPARTURE_S),  # int
        ("1737633600", DEPARTURE_S),
        ("1737633600.5", DEPARTURE_S + 0.5),
        ("-86400", -86_400.0),  # before 1970
        (0, 0.0),
    ],
)
def test_epoch_seconds(value: float | str, expected_s: float) -> None:
    parsed = parse_time(value)
    assert isinstance(parsed, float)
    assert parsed == expected_s


def test_fractional_seconds_are_kept() -> None:
    assert parse_time("2025-01-23T12:00:00.250Z") == DEPARTURE_S + 0.25


def test_the_default_map_departure_parses() -> None:
    assert parse_time(read_default_spec()["default_departure"], field="default_departure") == (
        DEPARTURE_S
    )


# ----------------------------------------------------------------------------- the range


def test_first_and_last_second_of_the_range() -> None:
    assert parse_time("0001-01-01T00:00:00Z") == FIRST_S
    assert parse_time("9999-12-31T23:59:59Z") == LAST_S
    assert parse_time(FIRST_S) == FIRST_S and parse_time(LAST_S) == LAST_S


@pytest.mark.parametrize(
    "value",
    [
        FIRST_S - 1.0,
        LAST_S + 1.0,
        "-1e20",
        1e300,
        "0001-01-01T00:00:00+01:00",  # 31 December of year 0 in UTC
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
    ],
)
def test_outside_years_1_to_9999_is_refused(value: float | str | datetime) -> None:
    with pytest.raises(InvalidInputError, match=r"outside years 1\.\.9999 UTC") as caught:
        parse_time(value, field="departure")
    assert caught.value.field == "departure"
    assert str(caught.value).startswith("departure: ")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf"])
def test_not_finite_is_refused(value: float | str) -> None:
    with pytest.raises(InvalidInputError, match="finite") as caught:
        parse_time(value, field="--time")
    assert caught.value.field == "--time"


@pytest.mark.parametrize(
    "text",
    ["", "tomorrow", "2025-13-01T00:00:00Z", "2025-01-23T25:00:00Z", "23/01/2025", "12:00"],
)
def test_unparseable_text_is_named(text: str) -> None:
    with pytest.raises(InvalidInputError, match="neither ISO 8601 nor epoch seconds") as caught:
        parse_time(text, field="timestamp")
    assert caught.value.field == "timestamp"
    assert repr(text.strip()) in str(caught.value)


def test_default_field_name() -> None:
    with pytest.raises(InvalidInputError, match=r"^time: ") as caught:
        parse_time("tomorrow")
    assert caught.value.field == "time"


# --------------------------------------------------------------------------- formatting


def test_format_is_iso_utc_with_z() -> None:
    assert format_time(DEPARTURE_S) == "2025-01-23T12:00:00Z"
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert format_time(-86_400) == "1969-12-31T00:00:00Z"
    assert format_time(DEPARTURE_S + 0.25) == "2025-01-23T12:00:00.250000Z"
    assert format_time(FIRST_S) == "0001-01-01T00:00:00Z"
    assert format_time(LAST_S) == "9999-12-31T23:59:59Z"


@given(st.integers(min_value=int(FIRST_S), max_value=int(LAST_S)))
def test_round_trip_of_whole_seconds(t_s: int) -> None:
    text = format_time(t_s)
    assert text.endswith("Z")
    assert parse_time(text) == t_s


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9))]
        ),
    ).map(lambda moment: moment.replace(microsecond=0))  # float seconds hold whole seconds exactly
)
def test_round_trip_of_aware_datetimes(moment: datetime) -> None:
    parsed = parse_time(moment.isoformat())
    assert format_time(parsed) == format_time(parse_time(moment))
    assert datetime.fromisoformat(format_time(parsed)) == moment
