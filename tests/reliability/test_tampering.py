"""R8: random byte flips in stored events, each caught by `verify` at the flipped event."""

from __future__ import annotations

import random

import psycopg

from channel_domain.store.integrity import verify
from tests.channel_domain.helpers import as_
from tests.channel_domain.store.test_integrity import seal, tamper
from tests.channel_domain.test_application import partner, signed_contract

FLIPS = 100


def test_every_random_byte_flip_is_caught_at_its_position(app, database_url, figure):
    contracts = [signed_contract(app, partner(app, "retailer")) for _ in range(4)]
    with as_("erp", "integration"):
        for n in range(40):
            app.record_sale(contracts[n % 4], order_id=f"O-{n}", amount=f"{n + 1}00.00", sold_on="2026-03-01")
    seal(app)
    head = app.event_recorder.max_notification_id()
    with psycopg.connect(database_url) as conn:
        sizes = dict(conn.execute("SELECT position, length(state) FROM events").fetchall())
    rng = random.Random(20261124)
    caught = 0
    for _ in range(FLIPS):
        position = rng.randint(1, head)
        column = rng.choice(["state", "state", "hash", "prev_hash"])
        offset = rng.randrange(sizes[position] if column == "state" else 32)
        bit = 1 << rng.randrange(8)
        flip = (f"UPDATE events SET {column} = set_byte({column}, %s, get_byte({column}, %s) # %s)"
                " WHERE position = %s", (offset, offset, bit, position))
        tamper(database_url, flip)
        try:
            result = verify(app.event_recorder.datastore)
        finally:
            tamper(database_url, flip)  # the same flip again restores the byte
        assert (result.ok, result.first_bad_position) == (False, position), (column, offset, result.problem)
        caught += 1
    assert verify(app.event_recorder.datastore).ok
    figure(f"R8: {caught}/{FLIPS} random byte flips caught at the flipped event (log of {head} events)")
