"""Issue #10, finding 2: a row-index column written by R or pandas is left out at ingestion, so the model never
learns the row order of a file sorted by its target; and a feature that alone predicts the target is named in a
warning (the features check and the evaluation report), never blocking."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import joblib

from mlplatform.definitions import INGEST_BATCH, MATERIALIZE_ALL, build_definitions
from mlplatform_tests.defs.test_assets import materialization, settings_for
from mlplatform_tests.lib.data.test_index_columns import diamonds_like, r_write_csv

REGRESSION = {"task": "regression", "target": "price"}


def run_all(tmp_path: Path, spec: Path) -> dg.ExecuteInProcessResult:
    job = build_definitions(settings_for(tmp_path, spec)).resolve_job_def(MATERIALIZE_ALL)
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return result


def features_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "features_are_valid"]
    return evaluation


def model_inputs(result: dg.ExecuteInProcessResult) -> list[str]:
    model = joblib.load(Path(materialization(result, "trained_model")["path"]))
    return [str(column) for column in model.pipeline.feature_names_in_]


def test_an_r_export_sorted_by_the_target_trains_without_its_row_names(tmp_path: Path, write_spec) -> None:
    data = tmp_path / "diamonds.csv"
    r_write_csv(diamonds_like(rows=400), data)

    result = run_all(tmp_path, write_spec(name="diamonds", problem=REGRESSION, source={"uri": str(data)}))

    raw = materialization(result, "raw_batch")
    assert raw["index_columns_dropped"] == ["Unnamed: 0"]
    assert [c.name for c in raw["dagster/column_schema"].columns] == ["carat", "cut", "price"]
    assert model_inputs(result) == ["carat", "cut"]
    check = features_check(result)
    assert check.passed and check.metadata["leakage"].value["leaks"] == []
    report = materialization(result, "evaluation_report")
    assert report["leakage_warning"] == [] and "Leakage warning" not in report["report"]


def test_kept_by_the_opt_out_the_row_number_is_named_as_a_leak(tmp_path: Path, write_spec) -> None:
    data = tmp_path / "diamonds.csv"
    r_write_csv(diamonds_like(rows=400), data)
    source = {"uri": str(data), "drop_index_columns": False}

    result = run_all(tmp_path, write_spec(name="diamonds", problem=REGRESSION, source=source))

    assert materialization(result, "raw_batch")["index_columns_dropped"] == []
    assert "Unnamed: 0" in model_inputs(result)
    check = features_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN  # a warning: training went on
    assert check.metadata["leakage"].value["leaks"] == ["Unnamed: 0"]
    assert check.metadata["leakage"].value["strongest"]["Unnamed: 0"] >= 0.98
    assert "column 'Unnamed: 0': single_feature_does_not_predict_the_target(metric='rank_r2'" in check.description
    report = materialization(result, "evaluation_report")
    assert report["leakage_warning"] == ["Unnamed: 0"]
    section = report["report"].split("## Leakage warning")[1].split("\n## ")[0]
    assert "| `Unnamed: 0` | 0.99" in section and "`price`" in section


def test_pandas_to_csv_with_its_index_is_left_out(tmp_path: Path, write_spec) -> None:
    data = tmp_path / "diamonds.csv"
    diamonds_like(rows=400).to_csv(data)  # the default: the index first, under an empty header

    result = run_all(tmp_path, write_spec(name="diamonds", problem=REGRESSION, source={"uri": str(data)}))

    assert materialization(result, "raw_batch")["index_columns_dropped"] == ["Unnamed: 0"]
    assert model_inputs(result) == ["carat", "cut"]
    assert materialization(result, "feature_pipeline")["numeric_columns"] == ["carat"]


def test_an_index_like_column_the_spec_declares_is_kept(tmp_path: Path, write_spec) -> None:
    data = tmp_path / "diamonds.csv"
    diamonds_like(rows=400).reset_index().to_csv(data, index=False)  # "index": 0..399, a name pandas gives
    problem = {**REGRESSION, "id_column": "index"}
    spec = write_spec(name="diamonds", problem=problem, source={"uri": str(data)})

    result = (
        build_definitions(settings_for(tmp_path, spec))
        .resolve_job_def(INGEST_BATCH)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral())
    )

    assert result.success
    raw = materialization(result, "raw_batch")
    assert raw["index_columns_dropped"] == []
    assert "index" in [c.name for c in raw["dagster/column_schema"].columns]


def test_a_second_batch_whose_index_runs_on_is_accepted(tmp_path: Path, write_spec) -> None:
    """Had the index reached the learned profile, batch 2 (rows 200-399) would break its range (0-199)."""
    folder = tmp_path / "landing"
    folder.mkdir()
    data = diamonds_like(rows=400).sample(frac=1, random_state=0)  # batches are not sorted by price
    data.iloc[:200].reset_index(drop=True).to_csv(folder / "batch_1.csv")
    data.iloc[200:].reset_index(drop=True).set_axis(range(200, 400)).to_csv(folder / "batch_2.csv")
    spec = write_spec(name="diamonds", problem=REGRESSION, source={"uri": str(folder)})
    job = build_definitions(settings_for(tmp_path, spec)).resolve_job_def(INGEST_BATCH)
    instance = dg.DagsterInstance.ephemeral()

    first = job.execute_in_process(instance=instance)
    second = job.execute_in_process(instance=instance, raise_on_error=False)

    assert first.success and second.success, [e.description for e in second.get_asset_check_evaluations()]
    assert materialization(second, "raw_batch")["index_columns_dropped"] == ["Unnamed: 0"]
    accepted = materialization(second, "accepted_data")
    assert accepted["batches"] == 2 and accepted["dagster/row_count"] == 400
