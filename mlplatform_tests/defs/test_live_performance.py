"""The live_performance asset on a real model version in a real registry, with predictions written by the
service's PredictionLog and labels landed as files: the verdict, the numbers the UI plots, what the retraining
sensor reads, and the warning checks."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from sklearn import metrics as skm

from mlplatform.definitions import build_definitions
from mlplatform.defs.monitoring import PERFORMANCE_ASSET, RETRAIN, RETRAIN_REASON
from mlplatform.lib.registry.registry import Registry
from mlplatform.lib.serving import serving
from mlplatform.lib.serving.prediction_log import PredictionLog
from mlplatform.resources.model_store import BentoMLStore
from mlplatform.settings import Settings
from mlplatform_tests.conftest import BENTOML_HOME
from mlplatform_tests.serving.models import SavedModel, save_penguins_model


class Monitored:
    """A home holding a champion, its prediction log and a labels folder, as the platform leaves them."""

    def __init__(self, tmp_path: Path, write_spec, model: SavedModel | None, **monitoring) -> None:
        self.labels = tmp_path / "labels"
        spec = write_spec(monitoring={"labels": {"uri": str(self.labels)}, "min_labelled": 20, **monitoring})
        self.settings = Settings.from_env(
            {
                "MLPLATFORM_HOME": str(tmp_path / "home"),
                "MLPLATFORM_SPEC": str(spec),
                "MLPLATFORM_DEPLOY": "none",
                "BENTOML_HOME": str(BENTOML_HOME),
            }
        )
        self.defs = build_definitions(self.settings)
        self.instance = dg.DagsterInstance.ephemeral()
        self.model = model

    def serve(self, frame: pd.DataFrame, batch: int = 10) -> list[tuple[str, int]]:
        """Predict ``frame`` in requests of ``batch`` rows, through the model runner and the prediction log the
        service uses; each row's (request_id, request_row)."""
        runner = serving.ModelRunner(self.model.model, self.model.schema, self.model.tag)
        log = PredictionLog(
            self.settings.prediction_log, schema=self.model.schema, model_tag=self.model.tag, flush_seconds=60
        )
        rows = serving.request_rows(frame, self.model.schema)
        named = []
        for start in range(0, len(rows), batch):
            request = rows[start : start + batch]
            request_id = log.request_ids.next()
            log.append(
                request, runner.predict_rows(request), endpoint="predict_batch", latency_ms=1.0, request_id=request_id
            )
            named += [(request_id, row) for row in range(len(request))]
        log.close()
        return named

    def land(self, name: str, frame: pd.DataFrame) -> None:
        self.labels.mkdir(exist_ok=True)
        frame.to_csv(self.labels / name, index=False)

    def materialize(self) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={dg.AssetKey(PERFORMANCE_ASSET)}
        )
        return job.execute_in_process(instance=self.instance, raise_on_error=False)


@pytest.fixture
def monitored(tmp_path: Path, write_spec) -> Monitored:
    home = tmp_path / "home"
    model = save_penguins_model(BENTOML_HOME)  # this process's BentoML home; the champion pointer is the home's
    Registry(BentoMLStore(BENTOML_HOME), str(home / "artifacts"), "penguins").promote(
        model.tag, kind="manual", by="test", reason="the model under watch"
    )
    return Monitored(tmp_path, write_spec, model, max_decay=0.05)


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    [event] = result.get_asset_materialization_events()
    return {name: getattr(value, "value", value) for name, value in event.materialization.metadata.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def labels_for(named: list[tuple[str, int]], truth: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {"request_id": [n[0] for n in named], "request_row": [n[1] for n in named], "species": truth.tolist()}
    )


def test_labels_that_match_the_holdout_keep_the_verdict_quiet(monitored: Monitored) -> None:
    holdout = monitored.model.holdout
    named = monitored.serve(holdout)
    monitored.land("day-1.csv", labels_for(named, holdout["species"]))

    result = monitored.materialize()

    assert result.success
    found = metadata(result)
    predicted = monitored.model.model.pipeline.predict(monitored.model.inputs)
    assert found["live_metric"] == round(skm.f1_score(holdout["species"], predicted, average="macro"), 4)
    assert found["holdout_metric"] == 1.0  # what the registry holds for the version
    assert found["labelled_predictions"] == found["logged_predictions"] == len(holdout)
    assert found["coverage"] == 1.0
    assert found[RETRAIN] is False and found[RETRAIN_REASON] == ""
    assert found["champion"] == monitored.model.tag and found["joined_by"] == "request_id"
    assert {name: e.passed for name, e in checks(result).items()} == {
        "performance_has_not_decayed": True,
        "label_files_are_readable": True,
    }


def test_decay_asks_for_retraining_and_fails_the_warning_check(monitored: Monitored) -> None:
    holdout = monitored.model.holdout
    named = monitored.serve(holdout)
    monitored.land("day-1.csv", labels_for(named, holdout["species"]))
    first = monitored.materialize()
    # The next day's file corrects every label to another species: the model is now wrong on every row.
    wrong = holdout["species"].map({"Adelie": "Gentoo", "Gentoo": "Chinstrap", "Chinstrap": "Adelie"})
    monitored.land("day-2.csv", labels_for(named, wrong))

    second = monitored.materialize()

    assert first.success and second.success  # decay is a verdict, not a failed run
    found = metadata(second)
    assert found[RETRAIN] is True
    assert found[RETRAIN_REASON] == f"decay: f1_macro 0 live vs 1 holdout on {len(holdout)} labelled predictions"
    decayed = checks(second)["performance_has_not_decayed"]
    assert not decayed.passed and decayed.severity == dg.AssetCheckSeverity.WARN
    assert (
        decayed.description.startswith("decay: f1_macro 0 live") and "more than max_decay 0.05" in decayed.description
    )
    # the numbers are kept per materialization, so the UI plots their history
    history = monitored.instance.fetch_materializations(dg.AssetKey(PERFORMANCE_ASSET), limit=10).records
    assert sorted(r.asset_materialization.metadata["live_metric"].value for r in history) == [
        0.0,
        metadata(first)["live_metric"],
    ]


def test_a_bad_label_file_is_named_and_the_good_ones_still_count(monitored: Monitored) -> None:
    holdout = monitored.model.holdout
    named = monitored.serve(holdout)
    monitored.land("day-1.csv", labels_for(named, holdout["species"]))
    monitored.land("day-2.csv", pd.DataFrame({"request": ["x"], "species": ["Adelie"]}))

    result = monitored.materialize()

    assert result.success
    readable = checks(result)["label_files_are_readable"]
    assert not readable.passed and readable.severity == dg.AssetCheckSeverity.WARN
    assert "day-2.csv: no column 'request_id'" in readable.metadata["problems"].value
    assert metadata(result)["labelled_predictions"] == len(holdout)


def test_without_a_champion_nothing_is_materialized_and_an_observation_says_why(tmp_path: Path, write_spec) -> None:
    monitored = Monitored(tmp_path, write_spec, None)
    monitored.land("day-1.csv", pd.DataFrame({"request": ["x"], "species": ["Adelie"]}))

    result = monitored.materialize()

    assert result.success and result.get_asset_materialization_events() == []
    [observation] = monitored.instance.fetch_observations(dg.AssetKey(PERFORMANCE_ASSET), limit=1).records
    found = {k: getattr(v, "value", v) for k, v in observation.asset_observation.metadata.items()}
    assert found["verdict"] == "no verdict: there is no champion yet" and found[RETRAIN] is False
    assert "live_metric" not in found
    # the checks still run: a bad label file is reported even while it keeps the verdict away
    readable = checks(result)["label_files_are_readable"]
    assert checks(result)["performance_has_not_decayed"].passed and not readable.passed
    assert "day-1.csv: no column 'request_id'" in readable.metadata["problems"].value
