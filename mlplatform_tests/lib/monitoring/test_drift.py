"""mlplatform.lib.monitoring.drift: effect sizes and false-discovery control on generated data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlplatform.lib.data import synthetic
from mlplatform.lib.monitoring import drift, statistics
from mlplatform.lib.monitoring.drift import Column, DriftError
from mlplatform.lib.spec import DriftSettings

NUMBER, CATEGORY = Column("x", "number", "input"), Column("c", "category", "input")
PREDICTED = Column("prediction", "category", "prediction")
PENGUIN_COLUMNS = [
    *(Column(name, "number", "input") for name in synthetic.MEASUREMENTS),
    Column("island", "category", "input"),
    Column("sex", "category", "input"),
    Column("prediction", "category", "prediction"),
]


def penguins(rows: int, seed: int) -> pd.DataFrame:
    frame = synthetic.penguins(rows, seed=seed)
    return frame.rename(columns={"species": "prediction"})


def frame(rows: int, seed: int, shift: float = 0.0, mix=(0.5, 0.3, 0.2), missing: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, rows)
    x[rng.random(rows) < missing] = np.nan
    return pd.DataFrame({"x": x, "c": rng.choice(["a", "b", "c"], size=rows, p=list(mix))})


def compare(reference, current, columns=(NUMBER, CATEGORY), **settings) -> drift.DriftReport:
    return drift.compare(reference, current, list(columns), DriftSettings(**settings), "p:v1")


def by_name(report: drift.DriftReport) -> dict[str, drift.ColumnDrift]:
    return {column.name: column for column in report.columns}


def test_shifted_numbers_and_a_new_category_mix_are_flagged() -> None:
    report = compare(frame(5000, 0), frame(50_000, 1, shift=0.5, mix=(0.2, 0.3, 0.5)))

    x, c = by_name(report)["x"], by_name(report)["c"]
    assert x.drifted and x.ks == pytest.approx(0.197, abs=0.02) and x.psi > 0.2
    assert c.drifted and c.cramers_v > 0.2 and c.psi > 0.2
    assert "ks 0.2" in x.why and "q " in x.why
    assert report.drifted_share == 1.0 and report.retrain
    assert "2 of 2 inputs drifted" in report.reason


def test_the_same_distribution_is_not_flagged_at_a_million_rows() -> None:
    report = compare(penguins(5000, 0), penguins(1_000_000, 1), PENGUIN_COLUMNS)

    assert [column.name for column in report.drifted] == []
    assert not report.retrain and report.drifted_share == 0.0
    assert max(column.psi for column in report.columns) < 0.02
    assert max(column.ks for column in report.columns if column.ks is not None) < 0.03


def test_a_small_shift_at_large_n_is_significant_but_not_drift() -> None:
    report = compare(frame(5000, 0), frame(1_000_000, 1, shift=0.08), [NUMBER])

    (x,) = report.columns
    assert x.p_value < 1e-4 and x.q_value < 0.05  # the p-value alone would flag it
    assert x.ks < 0.1 and not x.drifted
    assert x.why.startswith("significant")


def test_a_large_shift_on_a_handful_of_rows_is_no_drift_without_significance() -> None:
    reference = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]})
    current = pd.DataFrame({"x": [2.5, 3.5, 4.5, 5.5, 6.5, 7.5]})

    report = compare(reference, current, [NUMBER], min_rows=5)

    (x,) = report.columns
    assert x.ks >= 0.1 and x.psi >= 0.2  # large effects
    assert not x.drifted and "not significant" in x.why


def test_fewer_rows_than_min_rows_give_no_verdict() -> None:
    report = compare(frame(5000, 0), frame(150, 1, shift=3.0), min_rows=200)

    assert report.no_verdict.startswith("150 served row(s) of p:v1") and "min_rows (200)" in report.no_verdict
    assert report.columns == [] and not report.retrain


def test_benjamini_hochberg_keeps_marginal_columns_from_drifting() -> None:
    # Twenty columns, nineteen of them unchanged and one clearly shifted, and effect thresholds set so low that
    # only the false discovery control decides: by chance three unchanged columns have raw p-values below 0.05.
    rng = np.random.default_rng(5)
    names = [f"f{i}" for i in range(20)]
    reference = pd.DataFrame({name: rng.normal(0, 1, 400) for name in names})
    current = pd.DataFrame({name: rng.normal(0.0, 1, 400) for name in names})
    current["f0"] = rng.normal(1.5, 1, 400)
    columns = [Column(name, "number", "input") for name in names]

    report = compare(reference, current, columns, min_rows=10, ks=0.01, psi=0.01)

    unadjusted = [column.name for column in report.columns if column.p_value <= 0.05]
    adjusted = [column.name for column in report.drifted]
    assert sorted(unadjusted) == ["f0", "f14", "f19", "f7"]
    assert adjusted == ["f0"]
    expected = stats.false_discovery_control([column.p_value for column in report.columns], method="bh")
    assert [column.q_value for column in report.columns] == pytest.approx(list(expected))


def test_ks_distance_is_scipys_exact_statistic_with_ties_and_large_samples() -> None:
    rng = np.random.default_rng(7)
    reference = np.sort(rng.normal(0, 1, 5000).round(1))  # rounded: many ties, as logged measurements have
    current = np.sort(rng.normal(0.05, 1.1, 300_000).round(1))

    distance, p_value = statistics.ks_test(reference, current)

    expected = stats.ks_2samp(reference, current)
    assert distance == pytest.approx(expected.statistic, abs=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_a_rise_in_missing_values_is_drift_even_when_present_values_are_unchanged() -> None:
    report = compare(frame(5000, 0), frame(50_000, 1, missing=0.4), [NUMBER])

    (x,) = report.columns
    assert x.ks < 0.02  # the values that are there did not move
    assert x.current_missing == pytest.approx(0.4, abs=0.01) and x.reference_missing == 0.0
    assert x.drifted and "psi" in x.why


def test_unseen_categories_are_counted_in_one_bin() -> None:
    reference = pd.DataFrame({"c": ["a", "b"] * 2500})
    current = pd.DataFrame({"c": ["a", "b"] * 2000 + [f"new{i}" for i in range(1000)]})

    (c,) = compare(reference, current, [CATEGORY]).columns

    assert c.unseen == pytest.approx(0.2)
    assert c.bins == ("a", "b", drift.UNSEEN, drift.MISSING)
    assert c.current_shares == pytest.approx((0.4, 0.4, 0.2, 0.0))
    assert c.drifted


def test_constant_and_all_missing_columns_are_compared_without_error() -> None:
    reference = pd.DataFrame({"x": np.full(3000, 2.0), "c": ["only"] * 3000})
    same = pd.DataFrame({"x": np.full(1000, 2.0), "c": ["only"] * 1000})
    gone = pd.DataFrame({"x": np.full(1000, np.nan), "c": pd.Series([None] * 1000, dtype=object)})

    unchanged = compare(reference, same)
    assert [(c.psi, c.drifted) for c in unchanged.columns] == [(0.0, False), (0.0, False)]
    assert by_name(unchanged)["x"].ks == 0.0 and by_name(unchanged)["x"].bins == ("< 2", "= 2", "> 2", "(missing)")
    emptied = by_name(compare(reference, gone))
    assert emptied["x"].ks is None and emptied["x"].current_missing == 1.0 and emptied["x"].drifted
    assert emptied["c"].current_missing == 1.0 and emptied["c"].drifted


def test_numbers_logged_as_nullable_and_categories_as_booleans_compare_with_training_types() -> None:
    reference = pd.DataFrame({"x": np.arange(3000, dtype=float) % 7, "c": np.tile([True, False], 1500)})
    current = pd.DataFrame(
        {"x": pd.array(np.arange(3000) % 7, dtype="Int64"), "c": pd.array(np.tile([True, False], 1500), "boolean")}
    )

    report = compare(reference, current)

    assert [column.drifted for column in report.columns] == [False, False]
    assert by_name(report)["c"].bins == ("False", "True", drift.UNSEEN, drift.MISSING)
    assert by_name(report)["c"].unseen == 0.0


def test_prediction_drift_is_reported_and_a_named_column_asks_for_retraining_alone() -> None:
    reference = frame(5000, 0).assign(prediction=lambda f: f["c"])
    current = frame(50_000, 1).assign(prediction=np.where(np.arange(50_000) % 2, "a", "c"))

    report = compare(reference, current, (NUMBER, CATEGORY, PREDICTED), features=("prediction",))

    assert [column.name for column in report.drifted] == ["prediction"]
    assert report.drifted_share == 0.0  # the share counts inputs only
    assert report.retrain and report.reason == "drift in prediction, named in monitoring.drift.features"


def test_naming_a_column_that_is_not_compared_is_an_error() -> None:
    with pytest.raises(DriftError, match=r"monitoring.drift.features names \['islnd'\]"):
        compare(frame(300, 0), frame(300, 1), features=("islnd",))


def test_a_number_column_holding_text_is_an_error_naming_it() -> None:
    current = frame(300, 1).assign(x="seven")
    with pytest.raises(DriftError, match="column 'x' should hold numbers"):
        compare(frame(300, 0), current)


def test_the_drift_table_has_one_row_per_column_with_the_verdict() -> None:
    report = compare(frame(5000, 0), frame(50_000, 1, shift=0.5))

    table = report.table()
    assert table["column"].tolist() == ["x", "c"]
    assert table["drifted"].tolist() == ["yes", ""]
    assert "|" in table.to_markdown(index=False)
