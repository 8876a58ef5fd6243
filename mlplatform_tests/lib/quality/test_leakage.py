"""The leakage scan: a feature that alone predicts the target almost perfectly is named; honest ones are not."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlplatform.lib.features import features
from mlplatform.lib.quality import leakage

REGRESSION = {"task": "regression", "target": "price"}


def price_frame(rows: int = 5_000, seed: int = 0) -> pd.DataFrame:
    """Diamond-like: a heavy-tailed price that the carat explains in part, sorted by price."""
    rng = np.random.default_rng(seed)
    carat = rng.lognormal(-0.5, 0.5, rows)
    price = np.exp(8 + 1.7 * np.log(carat) + rng.normal(0, 0.3, rows))
    frame = pd.DataFrame({"carat": carat, "cut": rng.choice(["Fair", "Good", "Ideal"], rows), "price": price})
    return frame.sort_values("price", ignore_index=True)


def test_a_function_of_the_target_is_a_leak_and_honest_features_are_not(spec_from) -> None:
    frame = price_frame()
    frame["price_doubled"] = frame["price"] * 2 + np.random.default_rng(1).normal(0, 1e-3, len(frame))
    frame["row_number"] = np.arange(len(frame))  # the file is sorted by price
    frame["row_id"] = [f"r{i}" for i in frame.index]  # identifies rows, predicts nothing out of fold

    scan = leakage.scan(frame, spec_from(problem=REGRESSION), ["carat", "cut", "price_doubled", "row_number", "row_id"])

    assert {leak.feature for leak in scan.leaks} == {"price_doubled", "row_number"}
    assert all(leak.score > 0.999 and leak.metric == "rank_r2" for leak in scan.leaks)
    assert 0.7 < scan.scores["carat"] < 0.95  # informative, far from perfect
    assert scan.scores["row_id"] < 0.1 and scan.scores["cut"] < 0.1
    assert scan.rows == leakage.SAMPLE_ROWS  # a bounded sample of the 5,000 rows
    assert list(scan.scores)[:2] == [leak.feature for leak in scan.leaks]  # best first


def test_the_class_label_encoded_as_numbers_is_a_leak(spec_from, penguins: pd.DataFrame) -> None:
    spec = spec_from()
    penguins["species_code"] = penguins["species"].map({"Adelie": 0, "Chinstrap": 1, "Gentoo": 2})
    penguins["species_upper"] = penguins["species"].str.upper()
    numeric, categorical = features.feature_columns(penguins.drop(columns=["year"]), spec)

    scan = leakage.scan(penguins, spec, numeric + categorical)

    assert [(leak.feature, leak.score) for leak in scan.leaks] == [("species_code", 1.0), ("species_upper", 1.0)]
    assert scan.leaks[0].metric == "balanced_accuracy"


def test_the_bundled_penguins_raise_no_warning(spec_from, penguins: pd.DataFrame) -> None:
    spec = spec_from()
    numeric, categorical = features.feature_columns(penguins.drop(columns=["year"]), spec)

    scan = leakage.scan(penguins, spec, numeric + categorical)

    assert scan.leaks == []
    assert set(scan.scores) == set(numeric + categorical)
    assert max(scan.scores.values()) < 0.9  # no penguin measurement tells the species apart alone


def test_the_scan_is_seeded(spec_from) -> None:
    frame = price_frame()
    spec = spec_from(problem=REGRESSION)

    assert leakage.scan(frame, spec, ["carat", "cut"]).scores == leakage.scan(frame, spec, ["carat", "cut"]).scores


def test_rare_classes_missing_targets_and_infinities_do_not_break_the_scan(spec_from) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "label": ["a"] * 198 + ["b"] * 2})
    frame.loc[:5, "x"] = np.inf
    frame.loc[6:9, "label"] = None

    scan = leakage.scan(frame, spec_from(problem={"task": "classification", "target": "label"}), ["x"])

    assert scan.rows == 196 and scan.leaks == []


def test_too_little_to_score_is_no_warning(spec_from) -> None:
    constant = pd.DataFrame({"x": np.arange(100.0), "price": 1.0})
    tiny = price_frame(rows=leakage.MIN_ROWS - 1)
    spec = spec_from(problem=REGRESSION)

    for frame, column in ((constant, "x"), (tiny, "carat")):
        scan = leakage.scan(frame, spec, [column])
        assert scan.scores == {} and scan.rows == 0 and scan.leaks == []
