"""``mlplatform manifests``: the champion's manifests written as YAML, for the image model_image pushed for it
(or a placeholder it names), with the spec's sizing, and never the API token."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import kubernetes_validate
import pytest
import yaml

from mlplatform import cli
from mlplatform.lib.spec import load_spec
from mlplatform.resources import ModelRegistry
from mlplatform.settings import Settings
from mlplatform_tests import models
from mlplatform_tests.conftest import EXAMPLE_CSV
from mlplatform_tests.lib.deployment.test_kubernetes import SERVED_1_20
from mlplatform_tests.resources.test_kubernetes_api import TOKEN as DISCOVERY_TOKEN
from mlplatform_tests.resources.test_kubernetes_api import discovery_documents, kubeconfig
from mlplatform_tests.servers import HTTPTestServer

pytestmark = [
    pytest.mark.filterwarnings("ignore:jsonschema.RefResolver is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The metaschema specified by:DeprecationWarning"),
]
TOKEN = "tok-0b6e2d-the-api-token"
DIGEST = "127.0.0.1:15000/predictor@sha256:" + "ab" * 32


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, penguins) -> tuple[list[str], str]:
    """A home whose champion is a freshly fitted model; the arguments that name it, and the champion's tag."""
    spec_path = tmp_path / "spec.yaml"
    document = {
        "name": "penguins",
        "problem": {"task": "classification", "target": "species", "drop_columns": ["year"]},
        "source": {"uri": str(EXAMPLE_CSV)},
        "deployment": {"replicas": 3, "max_replicas": 5, "cpu": "500m", "service_type": "NodePort"},
    }
    spec_path.write_text(yaml.safe_dump(document))
    spec = load_spec(spec_path)
    monkeypatch.setenv("MLPLATFORM_API_TOKEN", TOKEN)  # in the environment, never in a manifest
    settings = Settings.from_env(home=tmp_path / "home", spec_path=spec_path)
    registry = ModelRegistry(bentoml_home=str(settings.bentoml_home), pointer_root=settings.artifact_root)
    models_of_project = registry.for_project(spec.name)
    training = penguins.dropna(subset=["species"])
    version = models.save_version(models_of_project, spec, models.fitted(training, spec), training)
    models_of_project.promote(version.tag, kind="promote", by="test", reason="the test's champion")
    return ["--spec", str(spec_path), "--home", str(tmp_path / "home")], version.tag


def written(folder: Path) -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*.yaml"))}


def test_manifests_pin_the_image_pushed_for_the_champion(project, tmp_path: Path, capsys) -> None:
    arguments, champion = project
    settings = cli._settings(Path(arguments[3]), Path(arguments[1]))  # the command's, with its instance's folder
    with cli.instance(settings) as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("model_image", metadata={"digest": DIGEST, "model_tag": champion})
        )

    assert cli.main(["manifests", *arguments, "--out", str(tmp_path / "out"), "--kubernetes-version", "1.20"]) == 0

    manifests = written(tmp_path / "out")
    assert list(manifests) == [
        "01-serviceaccount.yaml",
        "02-deployment.yaml",
        "03-service.yaml",
        "04-horizontalpodautoscaler.yaml",
        "05-poddisruptionbudget.yaml",
    ]
    deployment = manifests["02-deployment.yaml"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == DIGEST
    assert deployment["metadata"]["annotations"]["mlplatform/model-tag"] == champion
    assert deployment["spec"]["replicas"] == 3 and container["resources"]["requests"]["cpu"] == "500m"
    assert manifests["03-service.yaml"]["spec"]["type"] == "NodePort"
    assert manifests["04-horizontalpodautoscaler.yaml"]["apiVersion"] == "autoscaling/v2beta2"
    assert manifests["05-poddisruptionbudget.yaml"]["apiVersion"] == "policy/v1beta1"
    for manifest in manifests.values():
        kubernetes_validate.validate(manifest, "1.20", strict=True)
    for path in (tmp_path / "out").iterdir():
        assert TOKEN not in path.read_text(), path
    out = capsys.readouterr().out
    assert "PLACEHOLDER" not in out and "Secret 'penguins-api-token', key 'token'" in out


def test_without_a_pushed_image_the_placeholder_is_said_out_loud(project, tmp_path: Path, capsys) -> None:
    arguments, champion = project

    assert cli.main(["manifests", *arguments, "--out", str(tmp_path / "out")]) == 0

    (container,) = written(tmp_path / "out")["02-deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith("@sha256:" + "0" * 64)
    out = capsys.readouterr().out
    assert f"no image of the champion {champion} (no image has been pushed at all)" in out
    assert "PLACEHOLDER digest" in out and "autoscaling/v2 and policy/v1" in out


def test_an_image_not_pinned_by_digest_is_refused_and_nothing_written(project, tmp_path: Path, capsys) -> None:
    arguments, _ = project

    assert cli.main(["manifests", *arguments, "--out", str(tmp_path / "out"), "--image", "predictor:latest"]) == 2

    assert "image 'predictor:latest': pin it by digest" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_discover_writes_the_versions_the_cluster_serves(project, tmp_path: Path, capsys) -> None:
    arguments, _ = project
    with HTTPTestServer() as server:  # answers discovery as a v1.20 API server does, to its bearer token only
        for path, document in zip(("/api/", "/apis/"), discovery_documents(SERVED_1_20), strict=True):
            bearer = {"Authorization": f"Bearer {DISCOVERY_TOKEN}"}
            server.route(path, json.dumps(document), "application/json", required_headers=bearer)
        config = kubeconfig(tmp_path / "kubeconfig", server.base_url)
        out = ["--out", str(tmp_path / "out")]

        assert cli.main(["manifests", *arguments, *out, "--discover", "--kubeconfig", str(config)]) == 0

    manifests = written(tmp_path / "out")
    assert manifests["04-horizontalpodautoscaler.yaml"]["apiVersion"] == "autoscaling/v2beta2"
    assert manifests["05-poddisruptionbudget.yaml"]["apiVersion"] == "policy/v1beta1"
    assert "autoscaling/v2beta2 and policy/v1beta1, from the cluster's discovery" in capsys.readouterr().out


def test_without_a_champion_it_says_how_to_get_one(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"name": "nochampion", "problem": {"task": "regression", "target": "y"}, "source": {"uri": "x.csv"}}
        )
    )

    assert (
        cli.main(["manifests", "--spec", str(spec), "--home", str(tmp_path / "home"), "--out", str(tmp_path / "out")])
        == 2
    )

    assert "'nochampion' has no champion yet: run `" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def tiny_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.yaml"
    document = {"name": "p", "problem": {"task": "regression", "target": "y"}, "source": {"uri": "x.csv"}}
    spec.write_text(yaml.safe_dump(document))
    return spec


def test_status_without_a_cluster_names_the_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    spec = tiny_spec(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.setenv("MLPLATFORM_DEPLOY", "k8s")
    monkeypatch.setenv("MLPLATFORM_REGISTRY", "127.0.0.1:5000")

    assert cli.main(["status", "--spec", str(spec), "--home", str(tmp_path / "home")]) == 2

    assert f"error: kubeconfig {tmp_path / 'no-such-kubeconfig'}" in capsys.readouterr().err


def test_a_kubernetes_rollback_goes_to_the_previous_revision_and_takes_no_model_tag(tmp_path: Path, capsys) -> None:
    spec = tiny_spec(tmp_path)
    arguments = ["--spec", str(spec), "--home", str(tmp_path / "home"), "--reason", "r", "--target", "k8s"]

    assert cli.main(["rollback", "p:abc", *arguments]) == 2

    assert "--target k8s rolls back to the previous revision: name no model tag" in capsys.readouterr().err


def test_deploy_to_kubernetes_without_a_registry_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("MLPLATFORM_REGISTRY", raising=False)
    monkeypatch.setenv("MLPLATFORM_DEPLOY", "none")

    assert cli.main(["deploy", "--target", "k8s", "--spec", str(tiny_spec(tmp_path)), "--home", str(tmp_path)]) == 2

    assert "MLPLATFORM_DEPLOY=k8s needs MLPLATFORM_REGISTRY" in capsys.readouterr().err
