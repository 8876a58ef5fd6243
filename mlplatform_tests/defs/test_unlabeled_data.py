"""A survey where 40% of the respondents gave no label, through the whole graph: accepted, trained on the
labelled rows, and the unlabeled ones counted where people look."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from mlplatform.definitions import MATERIALIZE_ALL, build_definitions
from mlplatform.settings import Settings
from mlplatform_tests.conftest import BENTOML_HOME


def survey(rows: int, unlabeled: float) -> pd.DataFrame:
    generator = np.random.default_rng(7)
    age = generator.integers(18, 90, rows)
    income = generator.lognormal(10, 0.5, rows).round(2)
    # insured more often when older and richer, so there is something to learn
    chance = 1 / (1 + np.exp(-(0.05 * (age - 50) + 1.5 * (np.log(income) - 10))))
    insured = np.where(generator.random(rows) < chance, "yes", "no").astype(object)
    insured[generator.permutation(rows)[: int(rows * unlabeled)]] = None
    region = generator.choice(["north", "south", "east", "west"], rows)
    return pd.DataFrame({"age": age, "income": income, "region": region, "insured": insured})


def test_a_survey_with_40_percent_unlabeled_rows_is_accepted_and_trained_on(tmp_path: Path, write_spec) -> None:
    data = tmp_path / "survey.csv"
    survey(1000, unlabeled=0.4).to_csv(data, index=False)
    spec = write_spec(name="survey", problem={"task": "classification", "target": "insured"}, source={"uri": str(data)})
    settings = Settings.from_env(
        {
            "MLPLATFORM_HOME": str(tmp_path / "home"),
            "MLPLATFORM_SPEC": str(spec),
            "MLPLATFORM_DEPLOY": "none",
            "BENTOML_HOME": str(BENTOML_HOME),
        }
    )

    instance = dg.DagsterInstance.ephemeral()
    result = build_definitions(settings).resolve_job_def(MATERIALIZE_ALL).execute_in_process(instance=instance)

    assert result.success
    assert all(evaluation.passed for evaluation in result.get_asset_check_evaluations())
    materialized = {e.asset_key.to_user_string(): e.materialization for e in result.get_asset_materialization_events()}
    cleaned = {name: getattr(value, "value", value) for name, value in materialized["cleaned_data"].metadata.items()}
    assert (cleaned["rows_in"], cleaned["rows_without_target_dropped"], cleaned["dagster/row_count"]) == (
        1000,
        400,
        600,
    )
    assert cleaned["unlabeled_fraction"] == 0.4
    logged = [entry.user_message for entry in instance.all_logs(result.run_id) if entry.step_key == "cleaned_data"]
    assert any("400 unlabeled rows (40.0%, no 'insured')" in message for message in logged), logged
    split = [materialized[name].metadata["dagster/row_count"].value for name in ("training_data", "holdout_data")]
    assert sum(split) == 600
    assert "trained_model" in materialized and "champion_model" in materialized
