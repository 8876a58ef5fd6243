"""Holdout evaluation: metrics with known answers, PNG plots, permutation importance and the Markdown report."""

from __future__ import annotations

import base64
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from mlplatform.lib.evaluation.evaluation import EvaluationError, evaluate, render_report
from mlplatform.lib.evaluation.plots import confusion_matrix_png, image_markdown, importance_png, residuals_png
from mlplatform.lib.features.features import fit_feature_pipeline
from mlplatform.lib.quality import leakage
from mlplatform.lib.training.metrics import MetricError, classification_metrics, regression_metrics
from mlplatform_tests.models import fitted

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSIFY = {"task": "classification", "target": "label"}
REGRESS = {"task": "regression", "target": "price"}


def separable(rows_per_class: int = 10) -> pd.DataFrame:
    """x decides the class; the island is noise."""
    return pd.DataFrame(
        {
            "label": ["low"] * rows_per_class + ["high"] * rows_per_class,
            "x": np.r_[np.arange(float(rows_per_class)), np.arange(float(rows_per_class)) + 100],
            "island": ["Dream", "Biscoe"] * rows_per_class,
        }
    )


@pytest.fixture
def classifier(spec_from):
    spec = spec_from(problem=CLASSIFY)
    training = separable()
    return spec, fitted(training, spec)


class TestClassificationMetrics:
    def test_a_perfect_predictor(self) -> None:
        truth = ["a", "b", "c", "a"]
        probabilities = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)

        scores = classification_metrics(truth, truth, probabilities, ("a", "b", "c"))

        for name in ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro"):
            assert scores[name] == 1.0, name
        assert scores["roc_auc"] == 1.0
        assert scores["log_loss"] == pytest.approx(0.0, abs=1e-9)

    def test_known_answers_for_one_mistake(self) -> None:
        truth = ["a", "a", "b", "b"]
        predicted = ["a", "b", "b", "b"]
        probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.1, 0.9]])

        scores = classification_metrics(truth, predicted, probabilities, ("a", "b"))

        assert scores["accuracy"] == 0.75
        assert scores["balanced_accuracy"] == 0.75  # recall 1/2 for a, 2/2 for b
        assert scores["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)  # a: p 1, r 1/2; b: p 2/3, r 1
        assert scores["precision_macro"] == pytest.approx((1 + 2 / 3) / 2)
        assert scores["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.8, 0.9])))
        assert scores["roc_auc"] == 1.0  # every b is ranked above every a

    def test_labels_are_compared_as_text(self) -> None:
        scores = classification_metrics([1, 0, 1], ["1", "0", "0"], np.array([[0.2, 0.8]] * 3), ("0", "1"))

        assert scores["accuracy"] == pytest.approx(2 / 3)

    def test_roc_auc_is_left_out_when_a_class_is_missing_from_the_holdout(self) -> None:
        probabilities = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])

        scores = classification_metrics(["a", "b"], ["a", "b"], probabilities, ("a", "b", "c"))

        assert "roc_auc" not in scores
        assert scores["accuracy"] == 1.0

    def test_every_value_is_a_plain_float(self) -> None:
        scores = classification_metrics(["a", "b"], ["a", "a"], np.array([[0.6, 0.4], [0.7, 0.3]]), ("a", "b"))

        assert all(type(value) is float for value in scores.values())

    def test_calibration_known_answers(self) -> None:
        truth = ["a", "a", "b", "b"]
        probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.1, 0.9]])

        scores = classification_metrics(truth, ["a", "b", "b", "b"], probabilities, ("a", "b"))

        # brier of the positive class b: mean of (0.1-0)^2, (0.6-0)^2, (0.8-1)^2, (0.9-1)^2
        assert scores["brier"] == pytest.approx((0.01 + 0.36 + 0.04 + 0.01) / 4)
        # confidence bins: 0.6 (wrong) alone; 0.8 (right) alone; 0.9 and 0.9 (both right)
        assert scores["calibration_error"] == pytest.approx((0.6 + 0.2 + 2 * 0.1) / 4)

    def test_a_confident_and_right_model_is_calibrated(self) -> None:
        probabilities = np.array([[1.0, 0.0], [0.0, 1.0]])

        scores = classification_metrics(["a", "b"], ["a", "b"], probabilities, ("a", "b"))

        assert scores["calibration_error"] == 0.0
        assert scores["brier"] == 0.0

    def test_the_positive_class_decides_precision_recall_and_average_precision(self) -> None:
        # a skewed yes/no target: 1 "yes" in 5, which the model finds, with one false alarm
        truth = ["no", "no", "no", "no", "yes"]
        predicted = ["no", "no", "no", "yes", "yes"]
        probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.2, 0.8]])

        of_yes = classification_metrics(truth, predicted, probabilities, ("no", "yes"))  # the default: the second
        of_no = classification_metrics(truth, predicted, probabilities, ("no", "yes"), positive="no")

        assert (of_yes["precision"], of_yes["recall"]) == (0.5, 1.0)
        assert (of_no["precision"], of_no["recall"]) == (1.0, 0.75)
        assert of_yes["average_precision"] == 1.0 and of_no["average_precision"] == 1.0  # both ranked perfectly
        assert of_yes["roc_auc"] == of_no["roc_auc"] == 1.0  # symmetric in the positive class
        assert of_yes["brier"] == pytest.approx(of_no["brier"])

    def test_multiclass_has_no_positive_class_metrics(self) -> None:
        probabilities = np.eye(3)
        scores = classification_metrics(["a", "b", "c"], ["a", "b", "c"], probabilities, ("a", "b", "c"))
        assert {"precision", "recall", "f1", "average_precision"}.isdisjoint(scores)


class TestRegressionMetrics:
    def test_a_perfect_predictor(self) -> None:
        assert regression_metrics([1.0, 2.5, -3.0], [1.0, 2.5, -3.0]) == {"rmse": 0.0, "mae": 0.0, "r2": 1.0}

    def test_known_answers(self) -> None:
        scores = regression_metrics([1, 2, 3, 4], [2, 2, 3, 3])  # errors -1, 0, 0, 1

        assert scores["mae"] == 0.5
        assert scores["rmse"] == pytest.approx(math.sqrt(0.5))
        assert scores["r2"] == pytest.approx(1 - 2 / 5)  # residual 2 over total 5

    def test_predicting_the_mean_scores_zero_r2(self) -> None:
        assert regression_metrics([1, 2, 3], [2, 2, 2])["r2"] == 0.0


class TestEvaluate:
    def test_a_perfect_classifier_on_the_holdout(self, classifier) -> None:
        spec, model = classifier
        holdout = pd.DataFrame(
            {"label": ["low", "high", "low", "high"], "x": [3.5, 104.0, -1.0, 250.0], "island": ["Dream"] * 4}
        )

        evaluation = evaluate(model, holdout, spec)

        assert evaluation.primary_metric == "f1_macro"
        assert evaluation.primary_value == 1.0
        assert evaluation.metrics["accuracy"] == 1.0
        assert evaluation.metrics["roc_auc"] == 1.0
        assert evaluation.holdout_rows == 4
        assert set(evaluation.plots) == {
            "confusion_matrix",
            "roc_and_precision_recall",
            "calibration",
            "feature_importance",
        }
        assert all(png.startswith(PNG_SIGNATURE) for png in evaluation.plots.values())

    def test_the_deciding_feature_is_the_most_important(self, classifier) -> None:
        spec, model = classifier
        holdout = separable(rows_per_class=5).assign(x=lambda f: f["x"] + 0.5)

        importance = evaluate(model, holdout, spec).feature_importance

        assert importance["feature"].tolist() == ["x", "island"]
        assert importance["importance"].iloc[0] > 0.3
        assert importance.loc[importance["feature"] == "island", "importance"].item() == 0.0
        assert list(importance.columns) == ["feature", "importance", "std"]

    def test_a_regressor(self, spec_from) -> None:
        spec = spec_from(problem=REGRESS)
        x = np.arange(30.0)
        training = pd.DataFrame({"price": 3 * x + 2, "x": x})
        model = fitted(training, spec)
        holdout = pd.DataFrame({"price": [5.0, 47.0, 80.0], "x": [1.0, 15.0, 26.0]})

        evaluation = evaluate(model, holdout, spec)

        assert evaluation.primary_metric == "rmse"
        assert evaluation.metrics["rmse"] < 1.0
        assert evaluation.metrics["r2"] > 0.99
        assert set(evaluation.plots) == {"residuals", "feature_importance"}
        assert evaluation.plots["residuals"].startswith(PNG_SIGNATURE)

    def test_extra_holdout_columns_are_ignored(self, classifier) -> None:
        spec, model = classifier
        holdout = separable(rows_per_class=3).assign(unrelated="x")

        assert evaluate(model, holdout, spec).metrics["accuracy"] == 1.0

    @pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
    def test_a_class_unseen_in_training_fails_naming_it(self, classifier) -> None:
        """A time-ordered split makes this likely: a class that only appears in the latest rows."""
        spec, model = classifier
        holdout = pd.DataFrame({"label": ["low", "new"], "x": [1.0, 105.0], "island": ["Dream", "Dream"]})

        with pytest.raises(Exception, match="'new'") as raised:
            evaluate(model, holdout, spec)

        assert "training" in str(raised.value)

    @pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
    @pytest.mark.filterwarnings("ignore:A single label was found")
    def test_a_one_class_holdout_with_roc_auc_as_the_primary_metric(self, spec_from) -> None:
        spec = spec_from(problem={**CLASSIFY, "metric": "roc_auc"})
        training = separable()
        model = fitted(training, spec)
        holdout = separable(rows_per_class=3).query("label == 'low'")

        with pytest.raises(EvaluationError, match="problem.metric 'roc_auc' is undefined on this holdout"):
            evaluate(model, holdout, spec)


class TestPlots:
    def test_the_confusion_matrix_is_a_png(self) -> None:
        png = confusion_matrix_png(["a", "b", "b"], ["a", "a", "b"], ("a", "b"))

        assert png.startswith(PNG_SIGNATURE)
        assert len(png) > 1000

    def test_residuals_are_a_png(self) -> None:
        assert residuals_png([1.0, 2.0, 3.0], [1.1, 1.9, 3.4]).startswith(PNG_SIGNATURE)

    def test_importance_is_a_png(self) -> None:
        table = pd.DataFrame({"feature": ["x", "island"], "importance": [0.4, 0.0], "std": [0.1, 0.0]})

        assert importance_png(table, "f1_macro").startswith(PNG_SIGNATURE)

    def test_an_image_is_inlined_as_a_data_uri(self) -> None:
        png = residuals_png([1.0, 2.0], [1.0, 2.0])

        markdown = image_markdown("residuals", png)

        assert markdown.startswith("![residuals](data:image/png;base64,")
        assert base64.b64decode(markdown.removeprefix("![residuals](data:image/png;base64,").removesuffix(")")) == png


def test_the_report_states_the_metrics_and_links_the_plots(classifier) -> None:
    spec, model = classifier
    evaluation = evaluate(model, separable(rows_per_class=4), spec)

    report = render_report(evaluation, spec, model, {"confusion_matrix": "![cm](plots/cm.png)"})

    assert report.startswith("# Evaluation of penguins: LogisticRegression (candidate `logistic_regression`)\n")
    assert "Primary metric **f1_macro = 1.0000** (higher is better)." in report
    assert "| accuracy | 1.0000 |" in report
    assert "8 holdout rows" in report
    assert "### Confusion matrix\n\n![cm](plots/cm.png)" in report
    assert "| x | " in report and "| island | " in report
    assert "Leakage warning" not in report  # no scan given, no section


def test_the_report_warns_of_a_feature_that_alone_predicts_the_target(spec_from) -> None:
    spec = spec_from(problem=REGRESS)
    rng = np.random.default_rng(0)
    training = pd.DataFrame({"x": rng.normal(size=200), "noise": rng.normal(size=200)})
    training["price"] = 3 * training["x"] + rng.normal(0, 0.01, 200)
    model = fitted(training, spec)
    evaluation = evaluate(model, training.iloc[:20], spec)
    evaluation.leakage = leakage.scan(training, spec, ["x", "noise"])

    report = render_report(evaluation, spec, model, {})

    section = report.split("## Leakage warning\n")[1].split("\n## ")[0]
    assert "predicts `price` almost perfectly: cross-validated rank_r2" in section
    assert "| `x` | 0.99" in section and "noise" not in section
    assert report.index("## Leakage warning") < report.index("## Feature importance")


@pytest.mark.parametrize(
    ("problem", "said"),
    [
        (CLASSIFY, "**low** (the alphabetically second label; set `problem.positive_class`)"),
        ({**CLASSIFY, "positive_class": "high"}, "**high** (`problem.positive_class`)"),
    ],
)
def test_the_report_names_the_positive_class(spec_from, problem: dict, said: str) -> None:
    spec = spec_from(problem=problem)
    model = fitted(separable(), spec)

    report = render_report(evaluate(model, separable(rows_per_class=4), spec), spec, model, {})

    metrics = "precision, recall, f1, ROC AUC, average precision and the Brier score"
    assert f"Positive class for {metrics}: {said}." in report


def test_a_positive_class_the_model_does_not_know_fails_naming_it(spec_from) -> None:
    spec = spec_from(problem={**CLASSIFY, "positive_class": "medium"})
    model = fitted(separable(), spec_from(problem=CLASSIFY))

    with pytest.raises(MetricError, match=r"positive_class 'medium' is not one of the model's classes"):
        evaluate(model, separable(rows_per_class=4), spec)


def test_the_report_says_when_lower_is_better(spec_from) -> None:
    spec = spec_from(problem={**REGRESS, "metric": "mae"})
    x = np.arange(12.0)
    training = pd.DataFrame({"price": 2 * x, "x": x})
    model = fitted(training, spec)

    report = render_report(evaluate(model, training.iloc[:4], spec), spec, model, {})

    assert "Primary metric **mae = " in report
    assert "(lower is better)" in report


class TestSlicesAndCandidates:
    def test_metrics_per_slice_find_the_weak_segment(self, spec_from) -> None:
        """The model is perfect on Dream and always wrong on Biscoe: the slices must show exactly that."""
        spec = spec_from(problem=CLASSIFY, evaluation={"slice_columns": ["island"]})
        training = separable()
        model = fitted(training, spec)
        holdout = pd.DataFrame(
            {
                "label": ["low", "high", "high", "low"],
                "x": [1.0, 105.0, 2.0, 103.0],  # the Biscoe rows carry the opposite class's x
                "island": ["Dream", "Dream", "Biscoe", "Biscoe"],
            }
        )

        slices = evaluate(model, holdout, spec).slices.set_index("value")

        assert slices.loc["Dream", "accuracy"] == 1.0
        assert slices.loc["Biscoe", "accuracy"] == 0.0
        assert slices["rows"].tolist() == [2, 2]
        assert set(slices["column"]) == {"island"}

    def test_numeric_slices_are_quartiles_and_missing_is_its_own(self, spec_from) -> None:
        spec = spec_from(problem=REGRESS, evaluation={"slice_columns": ["x"], "max_slices": 3})
        x = np.arange(40.0)
        training = pd.DataFrame({"price": 2 * x, "x": x})
        model = fitted(training, spec)

        slices = evaluate(model, training.assign(x=lambda f: f["x"].where(f.index > 0)), spec).slices

        assert len(slices) == 5  # four quartiles and "(missing)"
        assert "(missing)" in slices["value"].tolist()
        assert slices["rows"].sum() == 40

    def test_an_unknown_slice_column_is_named(self, spec_from) -> None:
        spec = spec_from(problem=CLASSIFY, evaluation={"slice_columns": ["colour"]})
        model = fitted(separable(), spec)

        with pytest.raises(EvaluationError, match=r"evaluation.slice_columns: column 'colour' is not in the data"):
            evaluate(model, separable(3), spec)

    def test_every_candidate_is_compared_and_the_report_shows_it(self, spec_from) -> None:
        from mlplatform.lib.spec import Candidate
        from mlplatform.lib.training import candidates
        from mlplatform.lib.training.training import select, ship

        spec = spec_from(problem=CLASSIFY, evaluation={"slice_columns": ["island"]})
        training = separable(rows_per_class=15)
        features = fit_feature_pipeline(training, spec)
        inputs, target = candidates.transformed(features, training), training["label"]
        tuned = {
            name: candidates.tune(name, Candidate(estimator=estimator, trials=1), inputs, target, spec)
            for name, estimator in (("linear", "logistic_regression"), ("forest", "random_forest"))
        }
        model = ship(select(tuned.values()), features, len(training))

        evaluation = evaluate(model, separable(4), spec, tuned, features)
        report = render_report(evaluation, spec, model, {})

        table = evaluation.candidates.set_index("candidate")
        assert table.index.tolist() == ["linear", "forest"]
        assert table["selected"].sum() == 1 and table.loc[model.candidate, "selected"]
        assert table.loc["forest", "estimator"] == "RandomForestClassifier"
        assert table["cv_f1_macro"].between(0, 1).all() and table["holdout_f1_macro"].between(0, 1).all()
        assert "## Candidates" in report and "| forest " in report
        assert "## Metrics per slice" in report and "| island " in report

    def test_a_candidate_stopped_by_its_time_cap_is_reported_as_not_reproducible(self, spec_from) -> None:
        from mlplatform.lib.spec import Candidate
        from mlplatform.lib.training import candidates
        from mlplatform.lib.training.training import select, ship

        spec = spec_from(
            problem=CLASSIFY,
            training={"candidates": {"forest": {"estimator": "random_forest", "trials": 10, "seconds": 5}}},
        )
        training = separable(rows_per_class=15)
        features = fit_feature_pipeline(training, spec)
        inputs, target = candidates.transformed(features, training), training["label"]
        tuned = {
            name: candidates.tune(name, Candidate(estimator=estimator, trials=2), inputs, target, spec)
            for name, estimator in (("linear", "logistic_regression"), ("forest", "random_forest"))
        }
        # What tune returns when the cap fires after the first of ten trials (tested in test_candidates).
        tuned["forest"] = dataclasses.replace(tuned["forest"], trials=1, trials_asked=10, stopped_by_time_cap=True)
        model = ship(select(tuned.values()), features, len(training))

        evaluation = evaluate(model, separable(4), spec, tuned, features)
        report = render_report(evaluation, spec, model, {})

        table = evaluation.candidates.set_index("candidate")
        assert (
            table.loc["forest", "reproducible"] == "no: time cap fired" and table.loc["forest", "trials"] == "1 of 10"
        )
        assert table.loc["linear", "reproducible"] == "yes" and table.loc["linear", "trials"] == "2"
        assert "**Not reproducible:** the time cap" in report and "`forest`" in report.split("**Not reproducible:**")[1]
        assert "| no: time cap fired " in report
