"""The garbage collector's settings once a server is up (:mod:`syncd.collector`)."""

from __future__ import annotations

import gc

from syncd.collector import MIDDLE_COLLECTIONS_PER_FULL, settle_after_start_up


class _Cycle:
    other: object = None


def test_start_ups_garbage_is_collected_the_rest_left_out_and_full_collections_spaced() -> None:
    garbage = _Cycle()
    garbage.other = garbage
    del garbage
    kept = [_Cycle()]
    threshold = gc.get_threshold()
    try:
        settle_after_start_up()
        assert gc.get_freeze_count() > 0
        tracked = gc.get_objects()  # what collections walk: the frozen objects are not
        assert not any(isinstance(o, _Cycle) for o in tracked)  # the cycle was collected
        assert not any(o is kept for o in tracked)  # and what lives on is left out
        later = [_Cycle()]
        assert any(o is later for o in gc.get_objects())
        assert gc.get_threshold() == (*threshold[:2], MIDDLE_COLLECTIONS_PER_FULL)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
