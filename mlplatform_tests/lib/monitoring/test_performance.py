"""mlplatform.lib.monitoring.performance: labels joined to the champion's logged predictions, its live metric
against its holdout metric, and decay judged in the metric's own direction."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn import metrics as skm

from mlplatform.lib.monitoring.labels import read_labels
from mlplatform.lib.monitoring.performance import assess, join
from mlplatform.lib.serving.prediction_log import PredictionLog, read_prediction_log

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
CLASSIFIER = {
    "project": "penguins",
    "task": "classification",
    "classes": CLASSES,
    "columns": [{"name": "bill_length_mm", "kind": "number", "type": "float"}],
}
REGRESSOR = {
    "project": "penguins",
    "task": "regression",
    "classes": [],
    "columns": [{"name": "flipper_length_mm", "kind": "number", "type": "float"}],
}


class Served:
    """A real prediction log, written by PredictionLog as the service writes it, and a labels folder."""

    def __init__(self, tmp_path: Path, schema: dict, tag: str = "penguins:champion") -> None:
        self.folder, self.labels = tmp_path / "predictions", tmp_path / "labels"
        self.labels.mkdir()
        self.log = PredictionLog(self.folder, schema=schema, model_tag=tag, flush_seconds=60)
        self.schema, self.files = schema, 0

    def predict(self, answers: list, rows: list[dict] | None = None) -> str:
        """One request of ``len(answers)`` rows; its request id."""
        request_id = self.log.request_ids.next()
        rows = rows or [{self.schema["columns"][0]["name"]: 1.0} for _ in answers]
        outputs = [{"prediction": a, "probabilities": _one_hot(a) if self.schema["classes"] else None} for a in answers]
        self.log.append(rows, outputs, endpoint="predict_batch", latency_ms=1.0, request_id=request_id)
        return request_id

    def land(self, frame: pd.DataFrame) -> None:
        self.files += 1
        frame.to_csv(self.labels / f"labels-{self.files:03d}.csv", index=False)

    def read(self) -> pd.DataFrame:
        self.log.close()
        return read_prediction_log(self.folder, "penguins")


def _one_hot(label: str, sure: float = 0.8) -> dict[str, float]:
    rest = (1 - sure) / (len(CLASSES) - 1)
    return {c: sure if c == label else rest for c in CLASSES}


def spec(spec_from, served: Served, task: str = "classification", **monitoring):
    target = {"classification": "species", "regression": "flipper_length_mm"}[task]
    problem = {"task": task, "target": target, **monitoring.pop("problem", {})}
    monitoring = {"labels": {"uri": str(served.labels)}, "min_labelled": 4, "max_decay": 0.05, **monitoring}
    return spec_from(problem=problem, monitoring=monitoring)


def assessed(spec_, served: Served, holdout: dict[str, float], champion: str = "penguins:champion"):
    return assess(spec_, champion=champion, holdout_metrics=holdout, log=served.read(), labels=read_labels(spec_))


def test_a_decayed_classifier_asks_for_retraining(spec_from, tmp_path: Path) -> None:
    served = Served(tmp_path, CLASSIFIER)
    predicted = ["Adelie", "Adelie", "Gentoo", "Chinstrap", "Gentoo", "Adelie"]
    truth = ["Adelie", "Gentoo", "Gentoo", "Adelie", "Gentoo", "Chinstrap"]
    ids = [served.predict([p]) for p in predicted]
    served.land(pd.DataFrame({"request_id": ids, "species": truth}))

    report = assessed(spec(spec_from, served), served, {"f1_macro": 0.93})

    expected = skm.f1_score(truth, predicted, average="macro")
    assert report.live == pytest.approx(expected) and report.holdout == 0.93
    assert (report.labelled, report.predictions, report.coverage) == (6, 6, 1.0)
    assert report.decayed and report.decay == pytest.approx(0.93 - expected)
    assert report.retrain_reason == f"decay: f1_macro {expected:.4g} live vs 0.93 holdout on 6 labelled predictions"


def test_within_max_decay_there_is_no_retraining(spec_from, tmp_path: Path) -> None:
    served = Served(tmp_path, CLASSIFIER)
    ids = [served.predict([c]) for c in CLASSES * 2]
    served.land(pd.DataFrame({"request_id": ids, "species": CLASSES * 2}))

    report = assessed(spec(spec_from, served), served, {"f1_macro": 0.97})

    assert report.live == 1.0 and report.decay == pytest.approx(-0.03)
    assert not report.decayed and report.retrain_reason == ""
    assert "within max_decay 0.05" in report.verdict


def test_without_max_decay_decay_is_reported_only(spec_from, tmp_path: Path) -> None:
    served = Served(tmp_path, CLASSIFIER)
    ids = [served.predict(["Adelie"]) for _ in range(4)]
    served.land(pd.DataFrame({"request_id": ids, "species": ["Gentoo"] * 4}))

    report = assessed(spec(spec_from, served, max_decay=None), served, {"f1_macro": 0.9})

    assert report.live == 0.0 and report.decay == pytest.approx(0.9)
    assert not report.decayed and "decay is reported only" in report.verdict


@pytest.mark.parametrize(
    ("metric", "holdout", "decayed"),
    [("rmse", 1.0, True), ("mae", 1.0, True), ("rmse", 5.0, False), ("r2", 0.99, True)],
)
def test_a_regressor_s_decay_follows_the_metric_s_direction(
    spec_from, tmp_path: Path, metric: str, holdout: float, decayed: bool
) -> None:
    served = Served(tmp_path, REGRESSOR)
    predicted, truth = [200.0, 210.0, 190.0, 220.0, 205.0], [203.0, 207.0, 195.0, 218.0, 201.0]
    ids = [served.predict([p]) for p in predicted]
    served.land(pd.DataFrame({"request_id": ids, "flipper_length_mm": truth}))

    report = assessed(spec(spec_from, served, "regression", problem={"metric": metric}), served, {metric: holdout})

    scorers = {"rmse": skm.root_mean_squared_error, "mae": skm.mean_absolute_error, "r2": skm.r2_score}
    live = scorers[metric](truth, predicted)
    assert report.live == pytest.approx(live)
    assert report.decay == pytest.approx(holdout - live if metric == "r2" else live - holdout)
    assert report.decayed is decayed


def test_batch_rows_join_by_request_id_and_row(spec_from, tmp_path: Path) -> None:
    served = Served(tmp_path, CLASSIFIER)
    batch = served.predict(["Adelie", "Gentoo", "Chinstrap", "Gentoo"])
    single = served.predict(["Adelie"])
    served.land(
        pd.DataFrame(
            {
                "request_id": [batch, batch, batch, single],
                "request_row": [3, 0, 1, None],
                "species": ["Adelie", "Adelie", "Chinstrap", "Adelie"],
            }
        )
    )

    joined, unmatched, problems = join(served.read(), read_labels(spec(spec_from, served)))

    assert joined[["request_id", "request_row", "prediction", "truth"]].values.tolist() == [
        [batch, 0, "Adelie", "Adelie"],
        [batch, 1, "Gentoo", "Chinstrap"],
        [batch, 3, "Gentoo", "Adelie"],
        [single, 0, "Adelie", "Adelie"],
    ]
    assert (unmatched, problems) == (0, [])


def test_a_label_for_a_batch_request_without_its_row_is_named_and_left_out(spec_from, tmp_path: Path) -> None:
    served = Served(tmp_path, CLASSIFIER)
    batch = served.predict(["Adelie", "Gentoo"])
    served.land(pd.DataFrame({"request_id": [batch], "species": ["Adelie"]}))

    joined, _, problems = join(served.read(), read_labels(spec(spec_from, served)))

    assert joined.empty
    (problem,) = problems
    assert "labels-001.csv: 1 label(s) for batch requests give no request_row" in problem
    assert f"request {batch} answered 2 rows" in problem


def test_a_log_written_before_rows_kept_their_position_joins_nothing_and_breaks_nothing(
    spec_from, tmp_path: Path
) -> None:
    served = Served(tmp_path, CLASSIFIER)
    request = served.predict(["Adelie"])
    served.land(pd.DataFrame({"request_id": [request], "species": ["Adelie"]}))

    joined, unmatched, _ = join(served.read().drop(columns=["request_row"]), read_labels(spec(spec_from, served)))

    assert joined.empty and unmatched == 1


def test_a_later_label_corrects_an_earlier_one(spec_from, tmp_path: Path) -> None:
    served = Served(tmp_path, CLASSIFIER)
    request = served.predict(["Adelie"])
    served.land(pd.DataFrame({"request_id": [request], "species": ["Gentoo"]}))
    served.land(pd.DataFrame({"request_id": [request], "species": ["Adelie"]}))

    joined, _, _ = join(served.read(), read_labels(spec(spec_from, served)))

    assert joined["truth"].tolist() == ["Adelie"]


def test_by_id_column_every_prediction_for_an_id_takes_its_label(spec_from, tmp_path: Path) -> None:
    served = Served(tmp_path, {**CLASSIFIER, "id_column": "ring"})
    served.predict(["Adelie", "Gentoo"], rows=[{"bill_length_mm": 1.0, "ring": 1042}, {"bill_length_mm": 2.0}])
    served.predict(["Gentoo"], rows=[{"bill_length_mm": 1.0, "ring": 1042}])  # asked again about the same bird
    served.predict(["Chinstrap"], rows=[{"bill_length_mm": 1.0, "ring": "B-7"}])
    served.land(pd.DataFrame({"ring": ["1042", "B-7", "999"], "species": ["Adelie", "Gentoo", "Adelie"]}))
    spec_ = spec(spec_from, served, problem={"id_column": "ring"})

    joined, unmatched, _ = join(served.read(), read_labels(spec_))

    assert joined[["ring", "prediction", "truth"]].values.tolist() == [
        ["1042", "Adelie", "Adelie"],
        ["1042", "Gentoo", "Adelie"],
        ["B-7", "Chinstrap", "Gentoo"],
    ]
    assert unmatched == 1  # 999 was never asked about


def test_only_the_champion_s_predictions_count(spec_from, tmp_path: Path) -> None:
    served = Served(tmp_path, CLASSIFIER, tag="penguins:old")
    old = [served.predict(["Adelie"]) for _ in range(4)]
    served.land(pd.DataFrame({"request_id": old, "species": ["Adelie"] * 4}))

    report = assessed(spec(spec_from, served), served, {"f1_macro": 0.9}, champion="penguins:new")

    assert (report.labelled, report.predictions, report.unmatched_labels, report.live) == (0, 0, 4, None)
    assert report.verdict.startswith("no verdict: 0 labelled prediction(s) of penguins:new, fewer than")
    assert "no prediction of penguins:new is logged yet" in report.verdict


def test_too_few_labels_give_no_verdict(spec_from, tmp_path: Path) -> None:
    served = Served(tmp_path, CLASSIFIER)
    ids = [served.predict(["Adelie"]) for _ in range(5)]
    served.land(pd.DataFrame({"request_id": ids[:3], "species": ["Gentoo"] * 3}))

    report = assessed(spec(spec_from, served), served, {"f1_macro": 0.9})

    assert report.live is None and not report.decayed and report.coverage == 0.6
    assert "3 labelled prediction(s)" in report.verdict and "monitoring.min_labelled (4)" in report.verdict


def test_requests_that_never_carried_the_id_column_are_pointed_out(spec_from, tmp_path: Path) -> None:
    served = Served(tmp_path, CLASSIFIER)  # a model whose schema has no id column: nothing is logged under it
    served.predict(["Adelie"] * 4)
    served.land(pd.DataFrame({"ring": ["1", "2"], "species": ["Adelie", "Gentoo"]}))

    report = assessed(spec(spec_from, served, problem={"id_column": "ring"}), served, {"f1_macro": 0.9})

    assert report.labelled == 0 and "no request to penguins:champion carried 'ring'" in report.verdict


def test_log_loss_leaves_out_labels_of_classes_the_model_never_learned(spec_from, tmp_path: Path) -> None:
    served = Served(tmp_path, CLASSIFIER)
    ids = [served.predict([c]) for c in ["Adelie", "Gentoo", "Chinstrap", "Adelie", "Adelie"]]
    served.land(pd.DataFrame({"request_id": ids, "species": ["Adelie", "Gentoo", "Chinstrap", "Adelie", "Emperor"]}))

    report = assessed(spec(spec_from, served, problem={"metric": "log_loss"}), served, {"log_loss": 0.1})

    known = [_one_hot(c) for c in ["Adelie", "Gentoo", "Chinstrap", "Adelie"]]
    expected = skm.log_loss(
        ["Adelie", "Gentoo", "Chinstrap", "Adelie"], [[p[c] for c in CLASSES] for p in known], labels=CLASSES
    )
    assert report.live == pytest.approx(expected) and report.decayed  # a loss: higher live is worse


def test_roc_auc_without_every_class_labelled_gives_no_verdict(spec_from, tmp_path: Path) -> None:
    served = Served(tmp_path, CLASSIFIER)
    ids = [served.predict(["Adelie"]) for _ in range(4)]
    served.land(pd.DataFrame({"request_id": ids, "species": ["Adelie", "Gentoo"] * 2}))

    report = assessed(spec(spec_from, served, problem={"metric": "roc_auc"}), served, {"roc_auc": 0.99})

    assert report.live is None
    assert (
        report.verdict
        == "no verdict: roc_auc needs every class among the labelled predictions, which hold only Adelie, Gentoo"
    )


def test_without_labels_or_champion_there_is_no_verdict(spec_from, tmp_path: Path) -> None:
    served = Served(tmp_path, CLASSIFIER)
    spec_ = spec(spec_from, served)

    unlabelled = assess(spec_, champion="penguins:champion", holdout_metrics={}, log=served.read(), labels=None)
    no_champion = assess(spec_, champion=None, holdout_metrics={}, log=pd.DataFrame(), labels=read_labels(spec_))

    assert unlabelled.verdict.startswith("no verdict: the spec names no monitoring.labels.uri")
    assert no_champion.verdict == "no verdict: there is no champion yet"
    assert not unlabelled.decayed and not no_champion.decayed
