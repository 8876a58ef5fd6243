"""The deployment assets in the graph: the champion is built into a bento and served on this machine; a new
champion (from the gate or by hand) replaces what serves, and a challenger that loses changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import httpx
import psutil
import pytest

from mlplatform.definitions import PROMOTE_MODEL, REPRODUCTION, build_definitions, build_resources
from mlplatform.resources import LocalServing
from mlplatform.resources.local_server import LocalDeployment
from mlplatform.settings import Settings
from mlplatform.summary import KEPT_CHAMPION, outcome
from mlplatform_tests.defs.test_models import STRONG, WEAK, Project, materialized, metadata
from mlplatform_tests.servers import free_port


@pytest.fixture
def served_project(tmp_path: Path, write_spec, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLPLATFORM_API_TOKEN", raising=False)
    project = Project(tmp_path, write_spec, MLPLATFORM_DEPLOY="local", MLPLATFORM_SERVE_PORT=str(free_port()))
    deployment = LocalServing.for_settings(project.settings).deployment()
    yield project, deployment
    deployment.stop()


def ask(deployment: LocalDeployment, result) -> str:
    """The model tag that answers the example row the run recorded, with the run's token."""
    served = metadata(result, "local_deployment")
    token = Path(served["token"]).read_text()
    response = httpx.post(
        f"{served['url']}/predict",
        json=json.loads(served["example_row"]),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["model_tag"]


@pytest.mark.slow
def test_the_champion_is_served_and_replaced_only_when_it_changes(served_project) -> None:
    project, deployment = served_project
    first = project.run(training={"candidates": WEAK})
    assert first.success
    weak_tag = metadata(first, "champion_model")["tag"]
    assert metadata(first, "prediction_bento")["model_tag"] == weak_tag
    assert ask(deployment, first) == weak_tag
    weak_server = deployment.current()

    better = project.run(training={"candidates": STRONG})
    assert better.success
    strong_tag = metadata(better, "champion_model")["tag"]
    assert metadata(better, "local_deployment")["replaced"] == weak_tag
    assert ask(deployment, better) == strong_tag
    assert not psutil.pid_exists(weak_server.pid)  # the old server is gone, not left beside the new one
    strong_server = deployment.current()

    worse = project.run(training={"candidates": {"weak_again": WEAK["weak"]}})  # a new spec: it trains
    assert worse.success and outcome(worse) == KEPT_CHAMPION  # the gate kept the champion: not a failure
    assert {"prediction_bento", "local_deployment"}.isdisjoint(materialized(worse))
    assert deployment.current() == strong_server  # the same process still serves the champion

    rolled = project.run(PROMOTE_MODEL, ops={"champion_model": {"config": {"rollback": True, "reason": "test"}}})
    assert rolled.success
    assert ask(deployment, rolled) == weak_tag


def settings_with(tmp_path: Path, **environ: str) -> Settings:
    return Settings.from_env({"MLPLATFORM_HOME": str(tmp_path), **environ})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, {"prediction_bento", "local_deployment"}),
        ({"MLPLATFORM_DEPLOY": "none"}, set()),
        ({"MLPLATFORM_DEPLOY": "none", "MLPLATFORM_REGISTRY": "127.0.0.1:5000"}, {"prediction_bento", "model_image"}),
        ({"MLPLATFORM_REGISTRY": "127.0.0.1:5000"}, {"prediction_bento", "model_image", "local_deployment"}),
        ({"MLPLATFORM_ENV": "cloud", "MLPLATFORM_BUCKET": "b"}, set()),
        (
            {"MLPLATFORM_DEPLOY": "k8s", "MLPLATFORM_REGISTRY": "127.0.0.1:5000"},
            {"prediction_bento", "model_image", "kubernetes_deployment"},
        ),
    ],
)
def test_the_deployment_assets_follow_the_settings(tmp_path: Path, environ: dict, expected: set) -> None:
    graph = build_definitions(settings_with(tmp_path, **environ)).resolve_asset_graph()

    deployment = {
        key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).group_name == "deployment"
    }
    assert deployment == expected


def test_manual_promotion_redeploys_and_reproduction_never_does(tmp_path: Path) -> None:
    defs = build_definitions(settings_with(tmp_path, MLPLATFORM_REGISTRY="127.0.0.1:5000"))

    promote = defs.resolve_job_def(PROMOTE_MODEL).asset_layer.selected_asset_keys
    assert {key.to_user_string() for key in promote} == {
        "champion_model",
        "prediction_bento",
        "model_image",
        "local_deployment",
    }
    reproduced = REPRODUCTION.resolve(defs.resolve_asset_graph())
    assert {key.to_user_string() for key in reproduced}.isdisjoint(
        {"champion_model", "prediction_bento", "local_deployment"}
    )


def test_bad_deployment_settings_are_named(tmp_path: Path) -> None:
    from mlplatform.settings import SettingsError

    with pytest.raises(SettingsError, match="MLPLATFORM_DEPLOY='kubernetes': use 'local', 'k8s' or 'none'"):
        settings_with(tmp_path, MLPLATFORM_DEPLOY="kubernetes")
    with pytest.raises(SettingsError, match="MLPLATFORM_DEPLOY=k8s needs MLPLATFORM_REGISTRY"):
        settings_with(tmp_path, MLPLATFORM_DEPLOY="k8s")
    with pytest.raises(SettingsError, match="MLPLATFORM_K8S_NAMESPACE='Team_A': not a namespace name"):
        k8s_settings(tmp_path, MLPLATFORM_K8S_NAMESPACE="Team_A")
    with pytest.raises(SettingsError, match="MLPLATFORM_SERVE_PORT='http'"):
        settings_with(tmp_path, MLPLATFORM_SERVE_PORT="http")


def k8s_settings(tmp_path: Path, **environ: str) -> Settings:
    return settings_with(tmp_path, MLPLATFORM_DEPLOY="k8s", MLPLATFORM_REGISTRY="127.0.0.1:5000", **environ)


def test_a_kubernetes_deployment_is_configured_from_the_settings_and_its_token_is_never_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPLATFORM_API_TOKEN", "s3cret-value")
    settings = k8s_settings(
        tmp_path,
        MLPLATFORM_K8S_NAMESPACE="models",
        MLPLATFORM_KUBE_CONTEXT="prod-eks",
        KUBECONFIG="/etc/kube/config",
        MLPLATFORM_API_TOKEN="s3cret-value",
    )
    resource = build_resources(settings)["kubernetes"]

    assert (resource.namespace, resource.context, resource.kubeconfig) == ("models", "prod-eks", "/etc/kube/config")
    assert resource.service_url is None  # the Service's ClusterIP
    assert isinstance(resource.api_token, dg.EnvVar) and resource.api_token.env_var_name == "MLPLATFORM_API_TOKEN"
    promote = build_definitions(settings).resolve_job_def(PROMOTE_MODEL).asset_layer.selected_asset_keys
    assert {key.to_user_string() for key in promote} == {
        "champion_model",
        "prediction_bento",
        "model_image",
        "kubernetes_deployment",
    }


def rollout_outcome(rolled_back: bool):
    from mlplatform.resources.kubernetes_deploy import Outcome, Release

    def release(tag: str, revision: int) -> Release:
        image = f"127.0.0.1:5000/predictor@sha256:{str(revision) * 64}"
        return Release("models", "penguins-predictor", tag, image, revision, 2, 2, 2, "http://10.0.0.9:3000")

    failed = dict(rolled_back=True, reason="revision 3 cannot become ready: CrashLoopBackOff", failed_revision=3)
    return Outcome(
        serving=release("penguins:old", 4 if rolled_back else 2) if rolled_back else release("penguins:new", 2),
        attempted_model_tag="penguins:new",
        attempted_image=release("penguins:new", 3).image,
        previous=release("penguins:old", 1),
        rollout_seconds=12.3,
        rollback_seconds=4.5 if rolled_back else None,
        **(failed if rolled_back else {}),
    )


def test_a_rolled_back_release_fails_the_asset_naming_the_reason_and_what_still_serves() -> None:
    from mlplatform.defs.deployment.assets import outcome_metadata

    with pytest.raises(dg.Failure) as failure:
        outcome_metadata(rollout_outcome(rolled_back=True), {"bill_length_mm": 40.0})

    assert failure.value.description == (
        "penguins:new was rolled back on Kubernetes (revision 3), penguins:old still serves at revision 4: "
        "revision 3 cannot become ready: CrashLoopBackOff"
    )
    recorded = {key: getattr(value, "value", value) for key, value in failure.value.metadata.items()}
    assert recorded["rollback_reason"] == "revision 3 cannot become ready: CrashLoopBackOff"
    assert recorded["model_tag"] == "penguins:old" and recorded["revision"] == 4
    assert recorded["failed_model_tag"] == "penguins:new" and recorded["failed_revision"] == 3


def test_a_release_that_rolled_out_records_tag_digest_revision_and_ready_replicas() -> None:
    from mlplatform.defs.deployment.assets import outcome_metadata

    recorded = outcome_metadata(rollout_outcome(rolled_back=False), {"bill_length_mm": 40.0})

    assert recorded["model_tag"] == "penguins:new" and recorded["revision"] == 2
    assert recorded["image_digest"].endswith("@sha256:" + "2" * 64) and recorded["replicas_ready"] == 2
    assert recorded["replaced"] == "penguins:old" and "rollback_reason" not in recorded
