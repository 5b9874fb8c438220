"""``run`` tunes the garbage collector; the test restores it for the rest."""

from __future__ import annotations

import gc

from chaosproxy.gctune import (
    MIDDLE_THRESHOLD,
    OLD_THRESHOLD,
    YOUNG_THRESHOLD,
    tune_for_serving,
)


def test_tuning_freezes_what_exists_and_raises_the_thresholds() -> None:
    """Objects alive at start move out of reach; collections come less often."""
    before = gc.get_threshold()
    try:
        tune_for_serving()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
