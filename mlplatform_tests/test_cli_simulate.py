"""``mlplatform simulate``: a demo project from the bundled example, batches landed in its folder source that the
checks judge as their data deserves, and traffic sent to a real served model with the labels of what was sent,
which live_performance then judges."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from sklearn import metrics as skm

from mlplatform.cli import main
from mlplatform.definitions import INGEST_BATCH, build_definitions
from mlplatform.defs.monitoring import PERFORMANCE_ASSET, RETRAIN
from mlplatform.lib.registry.registry import Registry
from mlplatform.lib.serving.prediction_log import read_prediction_log
from mlplatform.lib.spec import default_spec_path, load_spec
from mlplatform.resources import LocalServing, bentos
from mlplatform.resources.model_store import BentoMLStore
from mlplatform.settings import Settings
from mlplatform_tests.conftest import BENTOML_HOME
from mlplatform_tests.servers import free_port
from mlplatform_tests.serving.models import save_penguins_model


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Path:
    """``simulate setup`` of a demo folder; the spec it wrote."""
    for name in ("MLPLATFORM_SPEC", "MLPLATFORM_API_TOKEN", "MLPLATFORM_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLPLATFORM_DEPLOY", "none")
    assert main(["simulate", "setup", str(tmp_path / "demo")]) == 0
    capsys.readouterr()
    return tmp_path / "demo" / "penguins.yaml"


def test_setup_writes_a_spec_whose_batches_land_in_a_folder(demo: Path, capsys: pytest.CaptureFixture) -> None:
    spec = load_spec(demo)

    assert spec.source.uri == "landing/" and (demo.parent / "landing" / "penguins.csv").is_file()
    assert spec.monitoring.labels.uri == "labels/" and spec.monitoring.max_decay == 0.05
    assert spec.automation.new_data and spec.automation.retrain and spec.automation.monitor
    assert main(["simulate", "setup", str(demo.parent)]) == 2  # never over a demo that exists
    assert "penguins.yaml exists" in capsys.readouterr().err


def test_a_batch_needs_a_folder_to_land_in(tmp_path: Path, demo: Path, capsys: pytest.CaptureFixture) -> None:
    done = main(["simulate", "batch", "--spec", str(default_spec_path()), "--home", str(tmp_path / "home")])

    assert done == 2
    assert "source.uri 'penguins.csv' is not a folder" in capsys.readouterr().err


def test_landed_batches_pass_the_checks_and_drifted_ones_are_flagged(
    tmp_path: Path, demo: Path, capsys: pytest.CaptureFixture
) -> None:
    settings = Settings.from_env(
        {"MLPLATFORM_DEPLOY": "none", "BENTOML_HOME": str(BENTOML_HOME)}, home=tmp_path / "home", spec_path=demo
    )
    ingest = build_definitions(settings).resolve_job_def(INGEST_BATCH)
    instance = dg.DagsterInstance.ephemeral()
    assert ingest.execute_in_process(instance=instance).success  # the bundled rows, the first batch
    common = ["--spec", str(demo), "--home", str(settings.home)]

    assert main(["simulate", "batch", "--rows", "150", "--seed", "1", *common]) == 0
    landed = capsys.readouterr().out
    normal = ingest.execute_in_process(instance=instance, raise_on_error=False)
    assert main(["simulate", "batch", "--rows", "150", "--seed", "2", "--drift", "--sigmas", "2", *common]) == 0
    drifted = ingest.execute_in_process(instance=instance, raise_on_error=False)

    assert landed.startswith("landed 150 rows in ") and "/landing/simulated-" in landed
    [normal_check] = normal.get_asset_check_evaluations()
    assert normal.success and normal_check.passed, normal_check.description
    # Two standard deviations stay inside the bundled contract's ranges, which decide over the learned profile:
    # the batch is accepted, and the spec's warning on the mean body mass says what moved.
    [drift_check] = drifted.get_asset_check_evaluations()
    assert drifted.success and not drift_check.passed and drift_check.severity == dg.AssetCheckSeverity.WARN
    assert "column 'body_mass_g': expect_column_mean_to_be_between" in drift_check.description


def test_traffic_without_a_server_says_how_to_start_one(
    tmp_path: Path, demo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("MLPLATFORM_DEPLOY", "local")
    monkeypatch.setenv("MLPLATFORM_SERVE_PORT", str(free_port()))

    assert main(["simulate", "traffic", "--spec", str(demo), "--home", str(tmp_path / "home")]) == 2
    assert "nothing serves at http://127.0.0.1:" in capsys.readouterr().err


def wait_for_log(settings: Settings, rows: int) -> pd.DataFrame:
    """The prediction log once it holds ``rows`` rows (the server writes it every few seconds)."""
    deadline = time.monotonic() + 60
    logged = read_prediction_log(settings.prediction_log, "penguins")
    while len(logged) < rows and time.monotonic() < deadline:
        time.sleep(0.5)
        logged = read_prediction_log(settings.prediction_log, "penguins")
    return logged


def live_performance(settings: Settings, instance: dg.DagsterInstance) -> dict:
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    result = job.get_subset(asset_selection={dg.AssetKey(PERFORMANCE_ASSET)}).execute_in_process(instance=instance)
    [event] = result.get_asset_materialization_events()
    return {name: getattr(value, "value", value) for name, value in event.materialization.metadata.items()}


@pytest.mark.slow
def test_traffic_to_a_served_model_and_its_labels_show_decay_under_drift(
    tmp_path: Path, demo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("MLPLATFORM_DEPLOY", "local")
    monkeypatch.setenv("MLPLATFORM_SERVE_PORT", str(free_port()))
    settings = Settings.from_env(home=tmp_path / "home", spec_path=demo)
    model = save_penguins_model(settings.bentoml_home)  # holdout f1_macro 1.0 in the registry
    Registry(BentoMLStore(settings.bentoml_home), settings.artifact_root, "penguins").promote(
        model.tag, kind="manual", by="test", reason="the model under watch"
    )
    deployment = LocalServing.for_settings(settings).deployment()
    deployment.deploy(bentos.build(model.tag, bentoml_home=settings.bentoml_home), model.tag)
    instance = dg.DagsterInstance.ephemeral()
    common = ["--spec", str(demo), "--home", str(settings.home)]
    try:
        assert main(["simulate", "traffic", "--labels", "--rows", "200", "--seed", "1", *common]) == 0
        normal_out = capsys.readouterr().out
        logged = wait_for_log(settings, 200)
        normal = live_performance(settings, instance)
        assert (
            main(
                ["simulate", "traffic", "--labels", "--drift", "--sigmas", "2", "--rows", "200", "--seed", "2", *common]
            )
            == 0
        )
        wait_for_log(settings, 400)
        drifted = live_performance(settings, instance)
    finally:
        deployment.stop()

    assert normal_out.startswith(f"sent 200 rows to {deployment.url} ({model.tag})")
    [labels_file] = sorted((demo.parent / "labels").glob("labels-*.csv"))[:1]
    labels = pd.read_csv(labels_file)
    joined = logged.merge(labels, on=["request_id", "request_row"])
    assert len(joined) == 200  # every sent row is in the log under the request id it was answered with
    expected = skm.f1_score(joined["species"], joined["prediction"].astype(str), average="macro")
    assert normal["labelled_predictions"] == 200 and normal["live_metric"] == round(expected, 4)
    assert drifted["labelled_predictions"] == 400 and drifted["live_metric"] < normal["live_metric"] - 0.05
    assert drifted[RETRAIN] is True and drifted["coverage"] == 1.0
