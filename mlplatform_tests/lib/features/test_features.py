"""The split and the feature pipeline: deterministic, stable as data grows, time-aware, and fitted on training rows
only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlplatform.lib.features.features import FeatureError, feature_columns, fit_feature_pipeline, row_ids, split

CLASSIFY = {"task": "classification", "target": "label"}


def classes(counts: dict[str, int]) -> pd.DataFrame:
    labels = [label for label, count in counts.items() for _ in range(count)]
    return pd.DataFrame({"label": labels, "x": np.arange(len(labels), dtype=float)})


class TestSplit:
    def test_a_time_column_puts_the_latest_rows_in_the_holdout(self, spec_from) -> None:
        seen = pd.date_range("2024-01-01", periods=10, freq="D", tz="UTC")
        # Shuffled on purpose: the split must sort, not trust the row order.
        frame = pd.DataFrame({"label": list("ab") * 5, "seen": seen[[3, 9, 0, 7, 1, 8, 2, 6, 4, 5]], "x": range(10)})
        spec = spec_from(problem={**CLASSIFY, "time_column": "seen"}, split={"holdout_fraction": 0.3})

        training, holdout, summary = split(frame, spec)

        assert sorted(holdout["seen"]) == list(seen[7:])
        assert training["seen"].max() < holdout["seen"].min()
        assert (summary.training_rows, summary.holdout_rows) == (7, 3)
        assert summary.strategy == "time-ordered by seen: holdout is the latest 3 rows"

    def test_a_time_split_keeps_at_least_one_holdout_row(self, spec_from) -> None:
        frame = pd.DataFrame({"label": ["a", "b", "a"], "seen": pd.date_range("2024", periods=3), "x": [1, 2, 3]})
        spec = spec_from(problem={**CLASSIFY, "time_column": "seen"}, split={"holdout_fraction": 0.01})

        training, holdout, _ = split(frame, spec)

        assert holdout["x"].tolist() == [3]
        assert len(training) == 2

    def test_a_row_keeps_its_side_as_data_grows(self, spec_from) -> None:
        """The second batch must not pull a first-batch holdout row into training, nor the reverse: a champion
        trained on batch 1 would otherwise be judged on rows it learned from."""
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(
            {"x": rng.normal(size=700), "c": rng.choice(list("pqr"), 700), "label": rng.normal(size=700)}
        )
        first, grown = frame.iloc[:300], frame.sample(frac=1, random_state=1)  # grown: more rows, another order
        spec = spec_from(problem={"task": "regression", "target": "label"})

        training, holdout, summary = split(first, spec)
        grown_training, grown_holdout, _ = split(grown, spec)

        assert set(holdout["x"]) <= set(grown_holdout["x"])
        assert set(training["x"]) <= set(grown_training["x"])
        assert 0.15 < len(grown_holdout) / len(grown) < 0.25  # split.holdout_fraction 0.2
        assert summary.strategy == "hash of each row's content, seed 42: a row keeps its side as data grows"

    def test_a_row_keeps_its_side_when_a_later_batch_makes_its_column_float(self, spec_from) -> None:
        whole = pd.DataFrame({"count": np.arange(200), "label": np.arange(200) % 7})
        later = pd.concat([whole, pd.DataFrame({"count": [np.nan], "label": [3]})], ignore_index=True)
        spec = spec_from(problem={"task": "regression", "target": "label"})

        assert later["count"].dtype == np.float64
        assert row_ids(later, spec)[:200].tolist() == row_ids(whole, spec).tolist()
        assert row_ids(whole[["label", "count"]], spec).tolist() == row_ids(whole, spec).tolist()  # column order

    def test_identical_rows_share_a_side(self, spec_from) -> None:
        frame = pd.DataFrame({"x": np.arange(50.0).repeat(4), "label": ["a", "b"] * 100})

        training, holdout, _ = split(frame, spec_from(problem=CLASSIFY))

        assert not holdout.empty
        assert set(map(tuple, training.values)).isdisjoint(map(tuple, holdout.values))

    def test_the_id_column_decides_the_side(self, spec_from) -> None:
        """A row keeps its side when its values are corrected later, as long as its id stays."""
        rng = np.random.default_rng(3)
        frame = pd.DataFrame({"penguin": np.arange(500), "x": rng.normal(size=500), "label": ["a", "b"] * 250})
        corrected = frame.assign(x=rng.normal(size=500)).sample(frac=1, random_state=2)  # and delivered reordered
        spec = spec_from(problem={**CLASSIFY, "id_column": "penguin"})

        _, holdout, summary = split(frame, spec)
        _, corrected_holdout, _ = split(corrected, spec)

        assert sorted(holdout["penguin"]) == sorted(corrected_holdout["penguin"])
        assert not set(holdout["x"]) & set(corrected_holdout["x"])  # the content changed, the side did not
        assert summary.strategy.startswith("hash of id_column penguin, seed 42")
        assert row_ids(frame, spec).tolist() == row_ids(corrected.sort_values("penguin"), spec).tolist()

    def test_every_class_has_a_training_row(self, spec_from) -> None:
        frame = classes({"common": 40, "rare": 3})
        spec = spec_from(problem=CLASSIFY, split={"holdout_fraction": 0.9})

        training, holdout, summary = split(frame, spec)

        assert set(training["label"]) == {"common", "rare"}
        assert "class 'rare' had no training row: 1 of its 3 moved to training" in summary.strategy
        assert (training["label"] == "rare").sum() == 1  # only the one row moved; the others stay held out

    @pytest.mark.parametrize(
        ("task", "labels", "fraction", "note"),
        [
            ("classification", ["a", "a"], 0.01, "no row hashed into the holdout (2 rows): the one nearest the cut"),
            ("regression", [1.0, 2.0], 0.99, "no row hashed into training (2 rows): the one nearest the cut moved"),
            ("classification", ["a", "a", "b"], 0.01, "no row hashed into the holdout (3 rows)"),
        ],
    )
    def test_a_tiny_frame_still_gets_both_sides(self, spec_from, task, labels, fraction, note) -> None:
        frame = pd.DataFrame({"label": labels, "x": np.arange(len(labels), dtype=float)})
        spec = spec_from(problem={"task": task, "target": "label"}, split={"holdout_fraction": fraction})

        training, holdout, summary = split(frame, spec)
        again = split(frame, spec)

        assert not training.empty and not holdout.empty
        assert task == "regression" or set(training["label"]) == set(labels)
        assert note in summary.strategy
        assert again[1].equals(holdout)  # the fallback is deterministic too

    @pytest.mark.parametrize(
        "frame",
        [
            pd.DataFrame({"label": ["a", "b"], "x": [1.0, 2.0]}),  # either row held out loses its class
            pd.DataFrame({"label": ["a", "a"], "x": [1.0, 1.0]}),  # one row twice: it cannot sit on both sides
        ],
    )
    def test_a_frame_that_cannot_be_split_fairly_fails(self, spec_from, frame) -> None:
        with pytest.raises(FeatureError, match="cannot hold out any of 2 rows without leaving training empty"):
            split(frame, spec_from(problem=CLASSIFY))

    def test_rows_are_neither_lost_nor_repeated(self, spec_from) -> None:
        frame = classes({"a": 37, "b": 26})

        training, holdout, _ = split(frame, spec_from(problem=CLASSIFY))

        assert sorted(pd.concat([training, holdout])["x"]) == list(frame["x"])
        assert list(training.index) == list(range(len(training)))  # reset, so positional and label access agree

    def test_the_same_seed_gives_the_same_split_and_another_seed_another(self, spec_from) -> None:
        frame = pd.DataFrame({"label": np.arange(100.0) * 2, "x": np.arange(100.0)})
        regression = {"task": "regression", "target": "label"}

        first = split(frame, spec_from(problem=regression, split={"seed": 7}))[1]
        again = split(frame, spec_from(problem=regression, split={"seed": 7}))[1]
        other = split(frame, spec_from(problem=regression, split={"seed": 8}))[1]

        assert first["x"].tolist() == again["x"].tolist()
        assert first["x"].tolist() != other["x"].tolist()

    @pytest.mark.parametrize("rows", [0, 1])
    def test_too_few_rows_fail(self, spec_from, rows: int) -> None:
        with pytest.raises(FeatureError, match=rf"cannot split {rows} row\(s\) into training and holdout sets"):
            split(classes({"a": rows}), spec_from(problem=CLASSIFY))


class TestFeatureColumns:
    def test_columns_are_sorted_by_kind_and_roles_are_excluded(self, spec_from) -> None:
        frame = pd.DataFrame(
            {
                "label": ["a"],
                "penguin": [7],
                "seen": pd.to_datetime(["2024-01-01"]),
                "mass": [3.5],
                "count": [2],
                "ringed": [True],
                "island": ["Dream"],
                "sex": pd.Series(["f"], dtype="category"),
            }
        )
        spec = spec_from(problem={**CLASSIFY, "id_column": "penguin", "time_column": "seen"})

        assert feature_columns(frame, spec) == (["mass", "count"], ["ringed", "island", "sex"])

    def test_nothing_to_learn_from_fails(self, spec_from) -> None:
        frame = pd.DataFrame({"label": ["a"], "penguin": [1]})

        with pytest.raises(FeatureError, match=r"no feature columns left besides \['label', 'penguin'\]"):
            feature_columns(frame, spec_from(problem={**CLASSIFY, "id_column": "penguin"}))


class TestFeaturePipeline:
    TRAINING = pd.DataFrame(
        {
            "label": ["a", "b", "a", "b", "a"],
            "mass": [1.0, 2.0, np.nan, 10.0, 3.0],
            "island": ["Dream", "Biscoe", None, "Dream", "Dream"],
        }
    )

    def test_imputation_and_scaling_are_learned_from_the_training_rows(self, spec_from) -> None:
        pipeline = fit_feature_pipeline(self.TRAINING, spec_from(problem=CLASSIFY))
        numeric = pipeline.named_transformers_["numeric"]
        categorical = pipeline.named_transformers_["categorical"]

        assert numeric.named_steps["impute"].statistics_.tolist() == [2.5]  # median of 1, 2, 10, 3
        imputed = [1.0, 2.0, 2.5, 10.0, 3.0]
        assert numeric.named_steps["scale"].mean_.tolist() == pytest.approx([np.mean(imputed)])
        assert categorical.named_steps["impute"].statistics_.tolist() == ["Dream"]

    def test_holdout_rows_do_not_change_what_was_learned(self, spec_from) -> None:
        """Transforming other data applies the training statistics; it never refits them."""
        pipeline = fit_feature_pipeline(self.TRAINING, spec_from(problem=CLASSIFY))
        holdout = pd.DataFrame({"mass": [np.nan, 1000.0], "island": ["Biscoe", None]})

        transformed = pd.DataFrame(pipeline.transform(holdout), columns=pipeline.get_feature_names_out())

        scale = pipeline.named_transformers_["numeric"].named_steps["scale"]
        assert transformed["mass"].iloc[0] == pytest.approx((2.5 - scale.mean_[0]) / scale.scale_[0])
        assert pipeline.named_transformers_["numeric"].named_steps["impute"].statistics_.tolist() == [2.5]
        assert transformed[["island_Biscoe", "island_Dream"]].values.tolist() == [[1.0, 0.0], [0.0, 1.0]]

    def test_the_output_columns(self, spec_from) -> None:
        pipeline = fit_feature_pipeline(self.TRAINING, spec_from(problem=CLASSIFY))

        assert pipeline.get_feature_names_out().tolist() == ["mass", "island_Biscoe", "island_Dream"]
        assert pipeline.feature_names_in_.tolist() == ["mass", "island"]

    @pytest.mark.parametrize("unknown", ["Torgersen", "", 42])
    def test_an_unknown_category_at_predict_time_does_not_crash(self, spec_from, unknown: object) -> None:
        pipeline = fit_feature_pipeline(self.TRAINING, spec_from(problem=CLASSIFY))

        row = pipeline.transform(pd.DataFrame({"mass": [2.0], "island": pd.Series([unknown], dtype=object)}))

        assert row.shape == (1, 3)
        assert row[0, 1:].tolist() == [0.0, 0.0]

    def test_booleans_and_pandas_strings_are_categories(self, spec_from) -> None:
        training = pd.DataFrame(
            {
                "label": ["a", "b", "a", "b"],
                "ringed": pd.Series([True, False, True, pd.NA], dtype="boolean"),
                "island": pd.Series(["Dream", pd.NA, "Dream", "Dream"], dtype="string"),
            }
        )

        pipeline = fit_feature_pipeline(training, spec_from(problem=CLASSIFY))

        assert pipeline.get_feature_names_out().tolist() == [
            "ringed_False",
            "ringed_True",
            "island_Dream",
        ]
        assert pipeline.transform(training.drop(columns="label")).tolist() == [
            [0.0, 1.0, 1.0],
            [1.0, 0.0, 1.0],  # the missing island takes the most frequent value, Dream
            [0.0, 1.0, 1.0],
            [0.0, 1.0, 1.0],  # the missing flag takes the most frequent value, True
        ]

    def test_rare_categories_share_one_column(self, spec_from) -> None:
        islands = [f"island-{i}" for i in range(40)] * 2
        training = pd.DataFrame({"label": ["a", "b"] * 40, "island": islands})

        pipeline = fit_feature_pipeline(training, spec_from(problem=CLASSIFY))

        assert len(pipeline.get_feature_names_out()) == 30  # MAX_CATEGORIES, the last one "infrequent"
        assert pipeline.get_feature_names_out()[-1] == "island_infrequent_sklearn"

    @pytest.mark.filterwarnings("ignore:Skipping features without any observed values:UserWarning")
    def test_a_column_with_no_values_fails_naming_it(self, spec_from) -> None:
        training = pd.DataFrame({"label": ["a", "b"], "mass": [np.nan, np.nan]})

        with pytest.raises(FeatureError, match=r"cannot fit the feature pipeline on columns \['mass'\]"):
            fit_feature_pipeline(training, spec_from(problem=CLASSIFY))
