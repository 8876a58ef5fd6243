"""A corpus of bad and good batches dropped into a landing folder after a first batch was accepted and a
model trained. A bad batch must stop the line visibly and lose nothing: the check (or ingestion) names the
column and the rule, nothing downstream runs, the batch waits in quarantine with its reason, and the last
model is byte-identical. A good batch joins the training data and is trained on."""

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from mlplatform.definitions import MATERIALIZE_ALL, build_definitions
from mlplatform.lib.spec import default_spec_path
from mlplatform.settings import Settings
from mlplatform.summary import REJECTED, outcome
from mlplatform_tests.conftest import BENTOML_HOME

DOWNSTREAM = {
    "accepted_data",
    "data_profile",
    "cleaned_data",
    "candidate_models",
    "trained_model",
    "evaluation_report",
    "challenger_model",
    "champion_model",
}


@dataclass
class Landing:
    folder: Path
    artifacts: Path
    job: dg.JobDefinition
    instance: dg.DagsterInstance
    arriving: pd.DataFrame  # penguins not yet delivered, to build new batches from
    model_bytes: bytes
    champion_bytes: bytes

    @property
    def model_path(self) -> Path:
        return self.artifacts / "assets" / "trained_model.joblib"

    @property
    def champion_path(self) -> Path:
        return self.artifacts / "registry" / "penguins" / "champion.json"

    def deliver(self, name: str, payload: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(payload)
        return path

    def run(self) -> dg.ExecuteInProcessResult:
        return self.job.execute_in_process(instance=self.instance, raise_on_error=False)

    def manifest(self) -> list[dict]:
        return json.loads((self.artifacts / "batches" / "manifest.json").read_text())["accepted"]


def landed(tmp_path: Path, penguins: pd.DataFrame, quality: dict) -> Landing:
    """A landing folder whose first batch (200 random penguins) was accepted and trained on; ``quality``
    replaces sections of the example's quality contract."""
    folder = tmp_path / "landing"
    folder.mkdir()
    shuffled = penguins.sample(frac=1, random_state=0).reset_index(drop=True)
    shuffled.iloc[:200].to_csv(folder / "batch_000.csv", index=False)
    spec = yaml.safe_load(default_spec_path().read_text())  # the example's quality contract, over a folder
    spec["source"] = {"uri": str(folder)}
    spec["quality"].update(quality)
    spec["training"] = {"candidates": {"linear": {"estimator": "logistic_regression", "trials": 2}}}  # fast
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    settings = Settings.from_env(
        {
            "MLPLATFORM_HOME": str(tmp_path / "home"),
            "MLPLATFORM_SPEC": str(spec_path),
            "MLPLATFORM_DEPLOY": "none",
            "BENTOML_HOME": str(BENTOML_HOME),
        }
    )
    job = build_definitions(settings).resolve_job_def(MATERIALIZE_ALL)
    instance = dg.DagsterInstance.ephemeral()
    first = job.execute_in_process(instance=instance)
    assert first.success
    artifacts = Path(settings.artifact_root)
    model_bytes = (artifacts / "assets" / "trained_model.joblib").read_bytes()
    champion_bytes = (artifacts / "registry" / "penguins" / "champion.json").read_bytes()
    arriving = shuffled.iloc[200:].reset_index(drop=True)
    return Landing(folder, artifacts, job, instance, arriving, model_bytes, champion_bytes)


@pytest.fixture
def landing(tmp_path: Path, penguins: pd.DataFrame) -> Landing:
    # Labels are what this project's data is for: a batch may lack a few, not more than 5%.
    return landed(tmp_path, penguins, {"max_unlabeled_fraction": 0.05})


def csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def with_values(column: str, values: list) -> Callable[[pd.DataFrame], bytes]:
    def build(frame: pd.DataFrame) -> bytes:
        batch = frame.head(50).copy().astype({column: object})
        batch.loc[: len(values) - 1, column] = values
        return csv(batch)

    return build


BAD_BATCHES = {
    # name: (how to build the batch's bytes from arriving penguins, the column, the rule or reason)
    "missing_target": (lambda f: csv(f.head(50).drop(columns=["species"])), "species", "expect_column_to_exist"),
    "missing_feature": (
        lambda f: csv(f.head(50).drop(columns=["flipper_length_mm"])),
        "flipper_length_mm",
        "expect_column_to_exist",
    ),
    "wrong_types": (
        with_values("bill_length_mm", ["long", "short", "39,1"]),
        "bill_length_mm",
        "expect_column_values_to_be_in_type_list",
    ),
    "too_many_unlabeled_rows": (  # 10% of rows, more than the 5% the spec tolerates
        with_values("species", [None] * 5),
        "species",
        "expect_column_values_to_not_be_null",
    ),
    "impossible_values": (
        with_values("body_mass_g", [-250.0, 0.0]),
        "body_mass_g",
        "expect_column_values_to_be_between",
    ),
    "unseen_category": (with_values("island", ["Atlantis"]), "island", "expect_column_values_to_be_in_set"),
    "every_row_duplicated": (
        lambda f: csv(pd.concat([f.head(50), f.head(50)])),
        None,
        "expect_compound_columns_to_be_unique",
    ),
    "header_only": (lambda f: csv(f.head(0)), None, "no rows"),
    "random_bytes": (lambda f: bytes(random.Random(0).randrange(256) for _ in range(4096)), None, "not utf-8 text"),
    "not_utf8": (
        lambda f: f.head(50).assign(island="Bíscoe").to_csv(index=False).encode("latin-1"),
        None,
        "not utf-8 text",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_a_bad_batch_stops_the_line_and_loses_nothing(landing: Landing, case: str) -> None:
    build, column, rule = BAD_BATCHES[case]
    payload = build(landing.arriving)
    delivered = landing.deliver(f"batch_001_{case}.csv", payload)

    result = landing.run()

    assert not result.success
    assert outcome(result) == REJECTED  # a rejection of the data (exit code 4), not a failure of the platform
    messages = [e.description or "" for e in result.get_asset_check_evaluations() if not e.passed]
    messages += [_error(e) for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    found = "\n".join(messages)
    assert rule in found and delivered.name in found, found
    if column is not None:
        assert f"column {column!r}: {rule}" in found, found
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert not materialized & DOWNSTREAM
    assert not delivered.exists(), "a rejected batch is moved out of the landing folder"
    [quarantined] = [p for p in (landing.artifacts / "batches" / "quarantine").iterdir()]
    assert (quarantined / "original" / delivered.name).read_bytes() == payload
    reason = json.loads((quarantined / "reason.json").read_text())
    assert rule in " ".join(reason["reasons"]) and reason["source"] == str(delivered)
    assert landing.model_path.read_bytes() == landing.model_bytes
    assert landing.champion_path.read_bytes() == landing.champion_bytes  # the serving model is untouched
    assert len(landing.manifest()) == 1


GOOD_BATCHES = {
    "clean_new_batch": lambda f: csv(f.head(60)),
    "reordered_columns": lambda f: csv(f.head(60)[list(reversed(f.columns))]),
    "extra_unused_column": lambda f: csv(f.head(60).assign(observer="K. Gorman")),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(GOOD_BATCHES))
def test_a_good_batch_joins_the_training_data_and_is_trained_on(landing: Landing, case: str) -> None:
    landing.deliver(f"batch_001_{case}.csv", GOOD_BATCHES[case](landing.arriving))

    result = landing.run()

    # trained on and stored; whether it replaces the champion is the promotion gate's call, not the batch's
    assert result.success
    assert [entry["rows"] for entry in landing.manifest()] == [200, 60]
    accepted = result.output_for_node("accepted_data")
    assert len(accepted) == 260 and "observer" not in accepted.columns
    assert list(accepted.columns) == list(landing.arriving.columns)
    [model] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "trained_model"]
    assert model.materialization.metadata["training_rows"].value == 208  # 80% of 260
    assert landing.model_path.read_bytes() != landing.model_bytes
    assert "challenger_model" in {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert not (landing.artifacts / "batches" / "quarantine").exists()


@pytest.mark.slow
def test_a_batch_with_a_few_unlabeled_rows_joins_and_cleaning_drops_them(landing: Landing) -> None:
    batch = landing.arriving.head(60).astype({"species": object})
    batch.loc[:1, "species"] = None  # 2 of 60 (3.3%), within the 5% the spec tolerates
    landing.deliver("batch_001_unlabeled.csv", csv(batch))

    result = landing.run()

    assert result.success
    assert [entry["rows"] for entry in landing.manifest()] == [200, 60]
    [cleaned] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "cleaned_data"]
    metadata = cleaned.materialization.metadata
    assert metadata["rows_without_target_dropped"].value == 2
    assert metadata["unlabeled_fraction"].value == round(2 / 260, 4)
    assert metadata["dagster/row_count"].value == 258
    assert landing.model_path.read_bytes() != landing.model_bytes


@pytest.mark.slow
def test_with_the_profile_off_text_in_a_numeric_column_is_quarantined_and_later_runs_succeed(
    tmp_path: Path, penguins: pd.DataFrame
) -> None:
    # No learned profile and no type in the contract: only the accepted data's schema speaks to types.
    landing = landed(
        tmp_path,
        penguins,
        {"profile": {"enabled": False}, "columns": {"species": {"allowed": ["Adelie", "Chinstrap", "Gentoo"]}}},
    )
    bad = landing.arriving.head(50).astype({"bill_depth_mm": object})
    bad["bill_depth_mm"] = bad["bill_depth_mm"].map(lambda depth: f"{depth}".replace(".", ","))
    rejected = landing.deliver("batch_001_decimal_commas.csv", csv(bad))

    result = landing.run()

    assert not result.success
    [failed] = [e for e in result.get_asset_check_evaluations() if not e.passed]
    lines = [line for line in (failed.description or "").splitlines() if line.startswith("column ")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("column 'bill_depth_mm': expect_column_values_to_be_in_type_list(")
    assert "from accepted data schema (double)" in lines[0]
    assert not rejected.exists()
    [quarantined] = list((landing.artifacts / "batches" / "quarantine").iterdir())
    assert (quarantined / "original" / rejected.name).read_bytes() == csv(bad)
    assert landing.model_path.read_bytes() == landing.model_bytes

    landing.deliver("batch_002_good.csv", csv(landing.arriving.iloc[50:110]))
    later = landing.run()

    assert later.success
    assert [entry["rows"] for entry in landing.manifest()] == [200, 60]
    assert len(later.output_for_node("accepted_data")) == 260
    assert landing.model_path.read_bytes() != landing.model_bytes


@pytest.mark.slow
def test_a_batch_that_passed_its_checks_but_cannot_join_is_refused_and_quarantined(
    tmp_path: Path, penguins: pd.DataFrame
) -> None:
    # Numbers in a text column pass every check here (no contract, no profile); appended, they would leave
    # training data that Parquet cannot store.
    landing = landed(tmp_path, penguins, {"profile": {"enabled": False}, "columns": {}})
    coded = landing.arriving.head(50).assign(sex=lambda batch: (batch["sex"] == "male").astype(int))
    delivered = landing.deliver("batch_001_coded_sex.csv", csv(coded))

    result = landing.run()

    assert not result.success and outcome(result) == REJECTED
    failure = "\n".join(_error(e) for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "column 'sex' is text (large_string) in the accepted data but numeric (dtype int64)" in failure
    assert delivered.name in failure and "quarantine" in failure
    assert not delivered.exists()
    [quarantined] = list((landing.artifacts / "batches" / "quarantine").iterdir())
    assert json.loads((quarantined / "reason.json").read_text())["stage"] == "acceptance"
    assert len(landing.manifest()) == 1
    assert landing.model_path.read_bytes() == landing.model_bytes

    landing.deliver("batch_002_good.csv", csv(landing.arriving.iloc[50:110]))
    later = landing.run()

    assert later.success
    assert [entry["rows"] for entry in landing.manifest()] == [200, 60]


@pytest.mark.slow
def test_with_nothing_new_nothing_runs_again(landing: Landing) -> None:
    result = landing.run()

    assert result.success
    assert not result.get_asset_materialization_events()
    assert landing.model_path.read_bytes() == landing.model_bytes


def _error(event: dg.DagsterEvent) -> str:
    error = event.step_failure_data.error
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return " ".join(messages)
