"""The real Dagster UI stack (``mlplatform dev``: webserver, daemon, code server) driven through its GraphQL
API as the UI drives it: load the code location, "Materialize all", read back what the UI shows."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from mlplatform.cli import instance_config
from mlplatform.lib.spec import default_spec_path, load_spec
from mlplatform.settings import Settings
from mlplatform_tests.servers_dagster import (
    EXAMPLE_PLOTS,
    PNG_SIGNATURE,
    DagsterServers,
    answering_model_tag,
    latest_metadata,
    png_from_markdown,
    tree,
)

pytestmark = pytest.mark.slow


MATERIALIZED_QUERY = """
query Materialized($runId: ID!) {
  assetNodes { assetKey { path } groupName }
  runOrError(runId: $runId) {
    __typename
    ... on Run { status tags { key value } assetMaterializations { assetKey { path } } }
  }
}
"""


def report_metrics(report: Path) -> dict[str, float]:
    """The ``| metric | holdout |`` table of the Markdown report written next to the plots."""
    lines = report.read_text().splitlines()
    start = lines.index("| metric | holdout |") + 2
    metrics = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        name, value = (cell.strip() for cell in line.strip("|").split("|"))
        metrics[name] = float(value)
    return metrics


def test_dev_runs_a_webserver_a_daemon_and_one_shared_code_server(dagster_ui: DagsterServers) -> None:
    commands = [process.command for process in tree(dagster_ui.process.pid).values()]
    # The code server is a proxy ("code-server start") and the gRPC server it runs; the webserver and the
    # daemon share it, so the definitions are imported once.
    for service in ("dagster_webserver", "dagster._daemon run", "dagster code-server start", "dagster api grpc"):
        assert sum(f" -m {service} " in command for command in commands) == 1, (service, commands)


def test_dev_installs_the_projects_instance_config(dagster_ui: DagsterServers) -> None:
    installed = Settings.from_env({"MLPLATFORM_HOME": str(dagster_ui.home)}).dagster_home / "dagster.yaml"
    assert installed.read_bytes() == instance_config().read_bytes()

    # ... and the running instance uses it: its run queue is the project's, not Dagster's default.
    instance = dagster_ui.graphql("{ instance { runQueueConfig { maxConcurrentRuns } } }")["instance"]
    project_queue = yaml.safe_load(instance_config().read_text())["run_queue"]["max_concurrent_runs"]
    assert instance["runQueueConfig"]["maxConcurrentRuns"] == project_queue


def test_dev_starts_without_dagsters_misleading_notices(dagster_ui: DagsterServers) -> None:
    """Started beside the project's dagster.yaml, Dagster would say that file "will not be used" (it is: its copy
    is the instance's); and `dagster dev` says on every start that `dg dev` supersedes it."""
    assert (dagster_ui.home.parent / "dagster.yaml").is_file()  # the folder it was started from has one
    log = dagster_ui.log_path.read_text(errors="replace")
    assert "Serving dagster-webserver" in log  # the log is the stack's
    assert "will not be used" not in log and "superseded" not in log, log


def test_materialize_all_materializes_every_asset(dagster_ui: DagsterServers, materialized_run: str) -> None:
    """Every asset but the monitoring ones, which have nothing served to judge yet (no verdict, nothing made up)."""
    answer = dagster_ui.graphql(MATERIALIZED_QUERY, runId=materialized_run)
    run = answer["runOrError"]
    assert run["status"] == "SUCCESS"
    assert {"key": "mlplatform/launched_by", "value": "pytest"} in run["tags"]
    defined = {tuple(node["assetKey"]["path"]) for node in answer["assetNodes"] if node["groupName"] != "monitoring"}
    materialized = {tuple(event["assetKey"]["path"]) for event in run["assetMaterializations"]}
    assert ("evaluation_report",) in defined
    assert materialized == defined


def test_materialize_all_leaves_the_champion_served(dagster_ui: DagsterServers, materialized_run: str) -> None:
    """The run ended, its worker process is gone, and the champion answers on the configured port."""
    run_id, metadata = latest_metadata(dagster_ui, "local_deployment")
    assert run_id == materialized_run
    _, champion = latest_metadata(dagster_ui, "champion_model")
    running = dagster_ui.local_deployment.current()
    assert running is not None and running.model_tag == metadata["model_tag"] == champion["tag"]

    assert answering_model_tag(running.url, metadata) == champion["tag"]


def test_evaluation_report_metadata_holds_holdout_metrics(dagster_ui: DagsterServers, materialized_run: str) -> None:
    spec = load_spec(default_spec_path())
    run_id, metadata = latest_metadata(dagster_ui, "evaluation_report")
    assert run_id == materialized_run

    metrics = {
        label.removeprefix("holdout_"): value
        for label, value in metadata.items()
        if label.startswith("holdout_") and label != "holdout_rows"
    }
    assert metadata["primary_metric"] == spec.problem.primary_metric
    assert spec.problem.primary_metric in metrics
    assert all(isinstance(value, float) and math.isfinite(value) for value in metrics.values()), metrics
    assert metadata["holdout_rows"] > 0

    # The report file people open says the same as the metadata the UI shows.
    report = Path(metadata["report_path"])
    assert report.is_relative_to(dagster_ui.home / "artifacts")
    assert report_metrics(report) == {name: round(value, 4) for name, value in metrics.items()}

    for plot in EXAMPLE_PLOTS:
        assert png_from_markdown(metadata[plot]).startswith(PNG_SIGNATURE), plot
