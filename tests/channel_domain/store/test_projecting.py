"""How a projection worker alone in its process treats the cycle collector."""

from __future__ import annotations

import gc

from channel_domain.store.projecting import _spare_the_collector


def test_a_busy_worker_freezes_what_it_holds_and_thaws_it_once_idle():
    try:
        kept = [[n] for n in range(1000)]  # what read models keep between batches
        _spare_the_collector(busy=True)
        assert gc.get_freeze_count() >= len(kept)
        _spare_the_collector(busy=False)  # idle: nothing stays frozen for good
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
