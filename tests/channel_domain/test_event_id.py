"""An event's id is uuid5(record id, str(version)), however it is computed (issue 18 computes it
without `uuid.uuid5`'s constructor): the audit trail, the feed, webhooks and the relay agree on
ids already published."""

from __future__ import annotations

import random
from uuid import UUID, uuid5

from channel_domain.aggregate import event_id


def test_the_same_ids_as_uuid5():
    rng = random.Random(18)
    streams = [UUID(int=0), UUID(int=2**128 - 1), *(UUID(int=rng.getrandbits(128)) for _ in range(2000))]
    for stream in streams:
        for version in (1, 2, 9, 10, 99, 100, 12345, rng.randint(1, 10**12)):
            made, expected = event_id(stream, version), uuid5(stream, str(version))
            assert made == expected and str(made) == str(expected) and hash(made) == hash(expected)
            assert made.version == 5 and made.variant == expected.variant and made.is_safe == expected.is_safe
