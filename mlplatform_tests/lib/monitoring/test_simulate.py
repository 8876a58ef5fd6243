"""mlplatform.lib.monitoring.simulate: batches drawn from the source's own rows, drifted on request, and the
labels of what was sent, for any spec."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from mlplatform.lib.monitoring import simulate
from mlplatform_tests.conftest import EXAMPLE_CSV

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def raw() -> pd.DataFrame:
    return pd.read_csv(EXAMPLE_CSV)


def test_drift_moves_every_number_by_its_spread_and_turns_the_category_mix_around(spec_from, raw) -> None:
    spec = spec_from()
    rows = simulate.draw(raw, 3000, np.random.default_rng(0))

    moved = simulate.shifted(rows, raw, spec, 1.5, np.random.default_rng(1))

    for column in ("bill_length_mm", "flipper_length_mm", "body_mass_g"):
        assert (moved[column] - rows[column]).mean() == pytest.approx(1.5 * raw[column].std(), rel=0.02), column
    before, after = raw["island"].value_counts(normalize=True), moved["island"].value_counts(normalize=True)
    assert before.idxmax() == "Biscoe" and after.idxmax() == before.idxmin()
    assert set(after.index) <= set(before.index)  # only values the data holds: the typed requests accept them
    assert moved["species"].equals(rows["species"]) and moved["year"].equals(rows["year"])  # target, dropped column


def test_integers_stay_integers_and_decimals_keep_their_places(spec_from) -> None:
    raw = pd.DataFrame({"count": np.arange(40), "price": np.linspace(1.25, 9.5, 40).round(2), "y": ["a", "b"] * 20})
    spec = spec_from(problem={"task": "classification", "target": "y"})

    moved = simulate.shifted(simulate.draw(raw, 50, np.random.default_rng(0)), raw, spec, 1.0, np.random.default_rng(1))

    assert moved["count"].dtype == np.int64
    assert np.allclose(moved["price"] * 100, (moved["price"] * 100).round())
    assert not np.allclose(moved["price"] * 10, (moved["price"] * 10).round())


def test_a_new_batch_has_the_source_s_columns_and_new_rows(spec_from, raw) -> None:
    batch = simulate.new_batch(raw, spec_from(), 300, sigmas=0.0, rng=np.random.default_rng(0), now=NOW)

    assert list(batch.columns) == list(raw.columns) and len(batch) == 300
    assert not batch.merge(raw, how="inner").shape[0] > 10  # jittered: almost none is a copy of a source row
    assert batch["bill_length_mm"].mean() == pytest.approx(raw["bill_length_mm"].mean(), rel=0.03)


@pytest.mark.parametrize("ids", [[5, 9, 7], ["P-1", "P-2", "P-3"]])
def test_a_new_batch_gives_its_rows_ids_of_their_own_and_the_time_now(spec_from, ids: list) -> None:
    raw = pd.DataFrame({"ring": ids, "seen": ["2026-01-01"] * 3, "x": [1.5, 2.5, 3.5], "y": ["a", "b", "a"]})
    spec = spec_from(problem={"task": "classification", "target": "y", "id_column": "ring", "time_column": "seen"})

    batch = simulate.new_batch(raw, spec, 4, sigmas=0.0, rng=np.random.default_rng(0), now=NOW)

    assert batch["ring"].is_unique and not set(batch["ring"]) & set(ids)
    assert batch["seen"].unique().tolist() == ["2026-05-01T12:00:00+00:00"]


def test_a_regression_target_is_never_drifted(spec_from, raw) -> None:
    spec = spec_from(problem={"task": "regression", "target": "body_mass_g"})
    labelled = raw.dropna(subset=["body_mass_g"])

    moved = simulate.shifted(labelled, labelled, spec, 2.0, np.random.default_rng(0))

    assert moved["body_mass_g"].equals(labelled["body_mass_g"])
    shift = (moved["bill_depth_mm"] - labelled["bill_depth_mm"]).mean()
    assert shift == pytest.approx(2.0 * labelled["bill_depth_mm"].std(), abs=0.05)  # to the data's one decimal


def test_categories_the_served_model_never_learned_are_sent_as_missing() -> None:
    schema = {"columns": [{"name": "island", "kind": "category", "type": "string", "categories": ["Biscoe"]}]}
    rows = pd.DataFrame({"island": ["Biscoe", "Atlantis", None]})
    servable = simulate.servable(rows, schema)["island"]

    assert servable[0] == "Biscoe" and servable.isna().tolist() == [False, True, True]


def test_labels_name_each_row_by_request_and_position_or_by_id(spec_from) -> None:
    sent = pd.DataFrame({"ring": ["A", "B", "A"], "species": ["Adelie", "Gentoo", "Adelie"]})
    answers = [("r-1", 0), ("r-1", 1), ("r-2", 0)]
    spec = spec_from(problem={"task": "classification", "target": "species", "id_column": "ring"})

    by_request = simulate.labels_for(sent, answers, spec, "request_id")
    by_id = simulate.labels_for(sent, answers, spec, "ring")

    assert by_request.values.tolist() == [["r-1", 0, "Adelie"], ["r-1", 1, "Gentoo"], ["r-2", 0, "Adelie"]]
    assert by_id.values.tolist() == [["B", "Gentoo"], ["A", "Adelie"]]
