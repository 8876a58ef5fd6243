"""Model development through Dagster: one step per candidate, the selection, the registry, the promotion
gate, promotion and rollback by hand, and retraining at a recorded data version."""

import logging
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlplatform.definitions import (
    MATERIALIZE_ALL,
    PROMOTE_MODEL,
    REPRODUCE_MODEL,
    build_definitions,
    run_config,
)
from mlplatform.lib.registry.registry import Registry
from mlplatform.resources.model_store import BentoMLStore
from mlplatform.settings import Settings
from mlplatform.summary import DONE, KEPT_CHAMPION, outcome
from mlplatform_tests.conftest import BENTOML_HOME, EXAMPLE_CSV

STRONG = {"strong": {"estimator": "logistic_regression", "trials": 1}}
# Regularised into near-uselessness: it predicts little more than the commonest species.
WEAK = {"weak": {"estimator": "logistic_regression", "trials": 1, "search": {"C": {"choices": [0.0001]}}}}


class Project:
    """One home, one instance, specs written as needed: the way a team retrains over weeks."""

    def __init__(self, tmp_path: Path, write_spec, **environ: str) -> None:
        self.tmp_path, self.write_spec = tmp_path, write_spec
        self.settings = Settings.from_env(
            {
                "MLPLATFORM_HOME": str(tmp_path / "home"),
                "MLPLATFORM_SPEC": str(write_spec()),
                "MLPLATFORM_DEPLOY": "none",
                "BENTOML_HOME": str(BENTOML_HOME),
                **environ,
            }
        )
        self.defs = build_definitions(self.settings)
        self.instance = dg.DagsterInstance.ephemeral()
        self.registry = Registry(BentoMLStore(self.settings.bentoml_home), self.settings.artifact_root, "penguins")

    def run(self, job: str = MATERIALIZE_ALL, ops: dict | None = None, **sections) -> dg.ExecuteInProcessResult:
        spec = self.write_spec(f"spec-{len(list(self.tmp_path.glob('spec-*')))}.yaml", **sections)
        config = run_config(spec)
        if ops:
            config["ops"] = ops
        return self.defs.resolve_job_def(job).execute_in_process(
            run_config=config, instance=self.instance, raise_on_error=False
        )


def metadata(result, key: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return {name: getattr(value, "value", value) for name, value in event.materialization.metadata.items()}


def gate(result) -> dg.AssetCheckEvaluation:
    [evaluation] = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == "challenger_beats_champion"
    ]
    return evaluation


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


@pytest.fixture
def project(tmp_path: Path, write_spec) -> Project:
    return Project(tmp_path, write_spec)


def test_each_candidate_is_its_own_step_and_the_best_is_chosen(project: Project) -> None:
    result = project.run(
        training={"candidates": {**STRONG, **WEAK, "forest": {"estimator": "random_forest", "trials": 1}}}
    )

    assert result.success
    steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert {f"candidate_models.tune_candidate[{name}]" for name in ("strong", "weak", "forest")} <= steps
    chosen = metadata(result, "trained_model")
    assert chosen["candidate"] in ("strong", "forest")  # never the crippled one
    report = metadata(result, "evaluation_report")
    for name in ("strong", "weak", "forest"):
        assert f"| {name} " in report["candidates"]
    assert "data:image/png;base64," in report["roc_and_precision_recall"]
    assert "data:image/png;base64," in report["calibration"]
    assert 0 <= report["holdout_calibration_error"] < 0.2


def test_a_time_cap_that_fires_is_a_warning_in_the_step_and_in_the_report(project: Project) -> None:
    # 200 quick trials (50 small trees on 344 rows) cannot fit in 3 s; the first one takes a fraction of it.
    quick = {"estimator": "random_forest", "trials": 200, "seconds": 3, "params": {"n_estimators": 50}}

    result = project.run(training={"candidates": {**STRONG, "capped": quick}})

    assert result.success
    warnings = [
        record.user_message
        for record in project.instance.all_logs(result.run_id)
        if record.level == logging.WARNING and "training.candidates.capped.seconds" in record.user_message
    ]
    assert len(warnings) == 1 and "this result is not reproducible" in warnings[0]
    assert metadata(result, "candidate_models")["stopped_by_time_cap"] == ["capped"]
    report = metadata(result, "evaluation_report")
    assert "**Not reproducible:**" in report["report"] and "`capped`" in report["report"]
    assert "no: time cap fired" in report["candidates"]


def test_every_trained_model_is_stored_with_its_lineage(project: Project) -> None:
    from mlplatform.lib.registry.registry import code_hash, code_version, spec_hash
    from mlplatform.lib.spec import load_spec

    result = project.run(training={"candidates": STRONG})

    assert result.success
    challenger = metadata(result, "challenger_model")
    version = project.registry.version(challenger["tag"])
    labels = version.labels
    assert labels["data_version"] == metadata(result, "accepted_data")["data_version"]
    assert labels["dagster_run_id"] == result.run_id
    assert labels["code_version"] == code_version() and labels["code_hash"] == code_hash()
    [spec_file] = project.tmp_path.glob("spec-0.yaml")
    assert labels["spec_hash"] == spec_hash(load_spec(spec_file))
    report = metadata(result, "evaluation_report")
    # The registry keeps the exact metric; the metadata shows it as the tables do, and keeps it for programs.
    assert report["holdout_f1_macro"] == round(version.metrics["f1_macro"], 4)
    assert report["metrics"]["f1_macro"] == version.metrics["f1_macro"]
    assert labels["metric.f1_macro"] == f"{version.metrics['f1_macro']:.6g}"
    assert labels["trained_at"] and labels["estimator"] == "LogisticRegression"
    # the first model clears the (absent) floors and becomes champion
    assert gate(result).passed
    assert project.registry.champion().tag == challenger["tag"]


def test_the_gate_promotes_a_better_challenger_and_keeps_the_champion_against_a_worse(project: Project) -> None:
    weak = project.run(training={"candidates": WEAK})
    assert weak.success
    weak_tag = metadata(weak, "challenger_model")["tag"]

    strong = project.run(training={"candidates": STRONG})
    assert strong.success and gate(strong).passed and outcome(strong) == DONE
    strong_tag = metadata(strong, "challenger_model")["tag"]
    assert project.registry.champion().tag == strong_tag
    assert metadata(strong, "champion_model")["previous"] == weak_tag

    # as weak as the first, under another name: the same spec twice would not even train (see below); with an
    # image registry set, the graph also holds the bento and the image, which must be skipped, not failed
    project.defs = build_definitions(replace(project.settings, image_registry="127.0.0.1:5000"))
    worse = project.run(training={"candidates": {"weak_again": WEAK["weak"]}})

    assert worse.success  # losing the gate is an outcome, not a failure
    assert outcome(worse) == KEPT_CHAMPION
    verdict = gate(worse)
    assert not verdict.passed and verdict.severity == dg.AssetCheckSeverity.WARN
    assert f"vs champion {strong_tag}" in verdict.description and "no better than the champion" in verdict.description
    comparison = verdict.metadata["comparison"].value
    assert "challenger penguins:" in comparison and f"champion {strong_tag}" in comparison
    assert "challenger_model" in materialized(worse)  # stored all the same, for a person to inspect
    assert "champion_model" not in materialized(worse)
    [observation] = [e.event_specific_data.asset_observation for e in worse.get_asset_observation_events()]
    assert observation.asset_key == dg.AssetKey("champion_model")
    assert observation.metadata["verdict"].value == "keep the champion"
    assert observation.metadata["champion"].value == strong_tag and observation.description == verdict.description
    skipped = {e.step_key for e in worse.all_events if e.event_type_value == "STEP_SKIPPED"}
    assert skipped == {"prediction_bento", "model_image"}
    assert not [e for e in worse.all_events if e.event_type_value == "STEP_FAILURE"]
    assert project.registry.champion().tag == strong_tag


def test_the_same_data_spec_and_code_train_nothing_twice(project: Project) -> None:
    from mlplatform.defs.data.assets import NOTHING_NEW

    first = project.run(training={"candidates": STRONG})
    assert first.success
    stored = metadata(first, "challenger_model")["tag"]

    again = project.run(training={"candidates": STRONG})

    assert again.success
    assert materialized(again) == {"raw_batch", "accepted_data", "data_profile"}  # nothing from cleaning on
    [observation] = [e.event_specific_data.asset_observation for e in again.get_asset_observation_events()]
    assert observation.asset_key == dg.AssetKey("cleaned_data") and observation.metadata[NOTHING_NEW].value == stored
    assert [v.tag for v in project.registry.versions()] == [stored]
    assert project.registry.champion().tag == stored

    changed = project.run(training={"candidates": STRONG}, split={"seed": 7})  # another spec: trains again
    assert "challenger_model" in materialized(changed)
    assert len(project.registry.versions()) == 2


def test_floors_keep_even_the_first_model_out(project: Project) -> None:
    result = project.run(training={"candidates": WEAK}, promotion={"floors": {"f1_macro": 0.9}})

    assert result.success and outcome(result) == KEPT_CHAMPION  # not promoted: `mlplatform run` exits 3
    assert "is below its floor 0.9 (promotion.floors)" in gate(result).description
    assert "champion_model" not in materialized(result)
    assert project.registry.champion() is None


def test_promote_and_roll_back_by_hand_record_who_and_why(project: Project) -> None:
    first = metadata(project.run(training={"candidates": WEAK}), "challenger_model")["tag"]
    second = metadata(project.run(training={"candidates": STRONG}), "challenger_model")["tag"]
    assert project.registry.champion().tag == second

    rolled = project.run(
        PROMOTE_MODEL,
        ops={"champion_model": {"config": {"rollback": True, "reason": "alerts on p99", "requested_by": "ana"}}},
    )

    assert rolled.success
    change = metadata(rolled, "champion_model")
    assert (change["tag"], change["previous"], change["kind"], change["by"]) == (first, second, "rollback", "ana")
    assert change["reason"] == "alerts on p99"
    assert project.registry.champion().tag == first
    promoted = project.run(
        PROMOTE_MODEL, ops={"champion_model": {"config": {"tag": second, "reason": "fixed", "requested_by": "bo"}}}
    )
    assert promoted.success and project.registry.champion().tag == second
    assert [(p.kind, p.by) for p in project.registry.history()][-2:] == [("rollback", "ana"), ("manual", "bo")]


def test_a_manual_change_without_a_reason_fails_and_changes_nothing(project: Project) -> None:
    tag = metadata(project.run(training={"candidates": STRONG}), "challenger_model")["tag"]

    result = project.run(PROMOTE_MODEL, ops={"champion_model": {"config": {"tag": tag}}})

    assert not result.success
    assert len(project.registry.history()) == 1


def test_retraining_at_a_recorded_data_version_reproduces_the_metrics(project: Project, penguins) -> None:
    data = project.tmp_path / "snapshot.csv"
    penguins.sample(260, random_state=0).to_csv(data, index=False)
    source = {"uri": str(data)}
    candidates = {"candidates": {**STRONG, "forest": {"estimator": "random_forest", "trials": 2}}}
    first = project.run(source=source, training=candidates)
    original = project.registry.version(metadata(first, "challenger_model")["tag"])
    penguins.to_csv(data, index=False)  # the data moves on
    later = project.run(source=source, training=candidates)
    assert metadata(later, "accepted_data")["data_version"] != original.data_version

    again = project.run(
        REPRODUCE_MODEL,
        ops={"cleaned_data": {"config": {"data_version": original.data_version}}},
        source=source,
        training=candidates,
    )

    assert again.success
    assert "champion_model" not in materialized(again) and "accepted_data" not in materialized(again)
    reproduced = project.registry.version(metadata(again, "challenger_model")["tag"])
    assert reproduced.tag != original.tag
    assert reproduced.data_version == original.data_version
    assert reproduced.metrics == original.metrics  # exactly: seeded split, search and estimators
    assert metadata(again, "trained_model")["candidate"] == metadata(first, "trained_model")["candidate"]
    # the current training data is untouched by the reproduction
    current = pd.read_parquet(project.settings.home / "artifacts" / "assets" / "accepted_data.parquet")
    assert len(current) == len(pd.read_csv(EXAMPLE_CSV))


def test_an_unknown_data_version_fails_naming_what_exists(project: Project) -> None:
    project.run(training={"candidates": STRONG})

    result = project.run(REPRODUCE_MODEL, ops={"cleaned_data": {"config": {"data_version": "feedfacefeedface"}}})

    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "cleaned_data"
    assert "data version 'feedfacefeedface' was never recorded" in str(failure.step_failure_data.error.to_string())


def test_a_candidate_that_cannot_fit_fails_its_step_naming_it(project: Project) -> None:
    bad = {"bad": {"estimator": "logistic_regression", "trials": 1, "params": {"max_iter": -5}}}

    result = project.run(training={"candidates": {**STRONG, **bad}})

    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "candidate_models.tune_candidate[bad]"
    # The step's own error, its candidate and the fit's cause: not any error that mentions a failed fit.
    raised = failure.step_failure_data.error.cause
    assert raised.cls_name == "CandidateError"
    assert raised.message.startswith(
        "mlplatform.lib.training.candidates.CandidateError: candidate 'bad' (logistic_regression) failed to fit: "
        "InvalidParameterError: The 'max_iter' parameter of LogisticRegression must be an int"
    )
    assert "Got -5 instead." in raised.message
    assert not {"trained_model", "challenger_model", "champion_model"} & materialized(result)
    assert project.registry.versions() == []
