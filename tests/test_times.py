"""times.iso formats fast (the second's text is remembered) yet as datetime would."""

import random
from datetime import UTC, datetime

from spoold.times import iso


def test_iso_matches_datetime_at_the_edges_of_seconds_and_milliseconds():
    rand = random.Random(5)
    values = [0.0, -0.5, -1e-7, 1e-7, 0.9999995, 0.9999996, -0.9999996, 1764446462.9999995]
    values += [rand.uniform(-3e9, 4e9) for _ in range(20_000)]
    whole = [rand.randrange(0, 2**31) + rand.randrange(10**6) / 1e6 for _ in range(5_000)]
    values += [w + d for w in whole for d in (0.0, 5e-7, -5e-7, 0.9999995)]
    for value in values:
        assert iso(value) == datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds")


def test_iso_of_times_in_one_second_differ_only_in_milliseconds():
    assert iso(1764446462.001) == "2025-11-29T20:01:02.001+00:00"
    assert iso(1764446462.999) == "2025-11-29T20:01:02.999+00:00"
    assert iso(1764446463.0) == "2025-11-29T20:01:03.000+00:00"
