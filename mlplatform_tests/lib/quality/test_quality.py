"""gx_suites.validate through the GX context it shares across validations, and GX imported in the background."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pandas as pd

from mlplatform.lib.quality import gx_suites
from mlplatform.lib.quality.builders import Rule


def between(column: str, low: float, high: float) -> Rule:
    return Rule(
        "expect_column_values_to_be_between", {"column": column, "min_value": low, "max_value": high}, "error", "test"
    )


def test_validations_sharing_a_context_answer_each_for_their_own_frame() -> None:
    small, large = pd.DataFrame({"x": np.arange(10.0)}), pd.DataFrame({"x": np.arange(100.0)})
    rules = [between("x", 0, 50)]

    answers = [gx_suites.validate(frame, rules, "same name").passed for frame in (small, large, small)]

    assert answers == [True, False, True]
    [line] = gx_suites.validate(large, rules, "same name").lines()
    assert line.startswith("column 'x': expect_column_values_to_be_between(min_value=0, max_value=50) failed: ")
    assert "49 of 100 rows unexpected (49.00%)" in line


def test_a_validated_frame_is_not_kept_alive() -> None:
    frame = pd.DataFrame({"x": np.arange(1000.0)})
    alive = weakref.ref(frame)

    assert gx_suites.validate(frame, [between("x", 0, 1e6)], "released").passed
    del frame
    gc.collect()

    assert alive() is None
