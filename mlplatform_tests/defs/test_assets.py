"""Asset slices materialized through Dagster into tmp_path: values, metadata, failures."""

from pathlib import Path

import dagster as dg
import joblib
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from mlplatform.definitions import MATERIALIZE_ALL, build_definitions, build_resources, run_config
from mlplatform.defs.data.assets import accepted_data, cleaned_data, raw_batch
from mlplatform.settings import Settings
from mlplatform_tests.conftest import BENTOML_HOME


def materialization(result, key: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return {name: getattr(value, "value", value) for name, value in event.materialization.metadata.items()}


def settings_for(tmp_path: Path, spec: Path) -> Settings:
    return Settings.from_env(
        {
            "MLPLATFORM_HOME": str(tmp_path / "home"),
            "MLPLATFORM_SPEC": str(spec),
            "MLPLATFORM_DEPLOY": "none",
            "BENTOML_HOME": str(BENTOML_HOME),
        }
    )


def test_raw_and_cleaned_data(tmp_path: Path, write_spec, penguins: pd.DataFrame) -> None:
    data = tmp_path / "with_duplicates.csv"
    pd.concat([penguins, penguins.head(10)]).to_csv(data, index=False)
    settings = settings_for(tmp_path, write_spec(source={"uri": str(data)}))

    result = dg.materialize([raw_batch, accepted_data, cleaned_data], resources=build_resources(settings))

    assert result.success
    raw = materialization(result, "raw_batch")
    assert raw["dagster/row_count"] == 354
    assert raw["batch"] == str(data) and not raw["appends"]
    assert [c.name for c in raw["dagster/column_schema"].columns] == list(penguins.columns)
    assert len(raw["data_version"]) == 16
    assert Path(raw["path"]).is_file() and Path(raw["path"]).suffix == ".parquet"
    assert Path(raw["path"]).is_relative_to(tmp_path)
    cleaned = materialization(result, "cleaned_data")
    assert cleaned["duplicate_rows_dropped"] == 10
    assert cleaned["dagster/row_count"] == 344
    assert cleaned["cleaning"]["missing_values"]["sex"] == 11
    stored = result.output_for_node("cleaned_data")
    assert "year" not in stored.columns


def test_the_data_version_follows_the_content(tmp_path: Path, write_spec, penguins: pd.DataFrame) -> None:
    data = tmp_path / "data.csv"
    penguins.to_csv(data, index=False)
    resources = build_resources(settings_for(tmp_path, write_spec(source={"uri": str(data)})))
    instance = dg.DagsterInstance.ephemeral()

    def version() -> str:
        result = dg.materialize([raw_batch], resources=resources, instance=instance)
        return materialization(result, "raw_batch")["data_version"]

    first, same = version(), version()
    penguins.head(300).to_csv(data, index=False)
    assert first == same != version()


def test_whole_graph_on_the_bundled_example(settings: Settings) -> None:
    defs = build_definitions(settings)
    result = defs.resolve_job_def(MATERIALIZE_ALL).execute_in_process(instance=dg.DagsterInstance.ephemeral())

    assert result.success
    report = materialization(result, "evaluation_report")
    assert report["primary_metric"] == "f1_macro"
    assert report["holdout_f1_macro"] > 0.9  # penguins are easy: a linear model separates the species
    # People read metrics rounded as the tables are; the exact values stay for programs comparing runs.
    shown = {name: value for name, value in report.items() if name.startswith("holdout_") and name != "holdout_rows"}
    assert all(value == round(value, 4) for value in shown.values()), shown
    exact = {f"holdout_{name}": value for name, value in report["metrics"].items()}
    assert exact.keys() == shown.keys() and exact != shown
    assert report["holdout_rows"] == 68  # a row is held out by its hash: 68 of 344, not round(0.2 * 344)
    assert "data:image/png;base64," in report["confusion_matrix"]
    assert "data:image/png;base64," in report["feature_importance"]
    report_file = Path(report["report_path"])
    assert report_file.read_text().startswith("# Evaluation of penguins")
    assert (report_file.parent / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    split = materialization(result, "training_data")
    assert split["dagster/row_count"] + report["holdout_rows"] == 344
    model = joblib.load(Path(materialization(result, "trained_model")["path"]))
    assert (
        model.pipeline.predict(pd.read_csv(settings.spec_path.parent / "penguins.csv").head(3)).tolist()
        == ["Adelie"] * 3
    )


def test_a_users_own_regression_data_through_a_spec_alone(tmp_path: Path, write_spec) -> None:
    diabetes = load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"})
    data = tmp_path / "diabetes.parquet"
    diabetes.to_parquet(data)
    spec = write_spec(
        name="diabetes",
        problem={"task": "regression", "target": "progression", "metric": "mae", "drop_columns": ["s6"]},
        source={"uri": str(data)},
    )
    result = (
        build_definitions(settings_for(tmp_path, spec))
        .resolve_job_def(MATERIALIZE_ALL)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral())
    )

    assert result.success
    report = materialization(result, "evaluation_report")
    assert report["primary_metric"] == "mae"
    assert {"holdout_rmse", "holdout_mae", "holdout_r2"} <= set(report)
    assert 0.3 < report["holdout_r2"] < 0.7  # a linear model explains about half the variance here
    assert "data:image/png;base64," in report["residuals"]
    assert materialization(result, "trained_model")["estimator"] == "Ridge"
    assert "s6" not in materialization(result, "feature_pipeline")["numeric_columns"]


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"problem": {"task": "classification", "target": "colour"}},
            "problem.target: column 'colour' is not in the data",
        ),
        ({"source": {"uri": "no/such/file.csv"}}, "no such file or folder"),
        ({"problem": {"task": "astrology", "target": "species"}}, "problem.task"),
    ],
)
def test_a_wrong_spec_fails_the_first_asset_with_its_field(tmp_path: Path, write_spec, sections, message) -> None:
    """A run's own spec (its run config, as the launchpad sets it) is checked by its first asset; the code
    location's spec, by loading (test_definitions.py)."""
    settings = settings_for(tmp_path, write_spec())
    result = (
        build_definitions(settings)
        .resolve_job_def(MATERIALIZE_ALL)
        .execute_in_process(
            run_config=run_config(write_spec("wrong.yaml", **sections)),
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    )

    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "raw_batch"
    error = failure.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    assert message in error.message
    assert not result.get_asset_materialization_events()
