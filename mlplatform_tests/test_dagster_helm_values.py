"""deploy/helm/values.yaml for the official Dagster Helm chart: every key it sets is a key of the chart (checked
against the chart's key paths in mlplatform_tests/data), the Kubernetes parts are valid Kubernetes, and it says
what deploy/dagster.yaml and deploy/kubernetes say: the same queue, retention, encrypted step logs in S3, non-root
pods, and no secret in the file."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mlplatform_tests.test_deploy_instance import production_config

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "deploy" / "helm" / "values.yaml"
CHART_KEYS = Path(__file__).parent / "data" / "dagster_helm_values_keys.txt"
COMPONENTS = {
    "dagsterWebserver": ("dagsterWebserver",),
    "dagsterDaemon": ("dagsterDaemon",),
    "code server": ("dagster-user-deployments", "deployments", 0),
}


def chart_keys() -> set[str]:
    return {line for line in CHART_KEYS.read_text().splitlines() if line and not line.startswith("#")}


def key_paths(value: object, prefix: str = "") -> list[str]:
    """Every key path of a values document: ``a.b`` for mappings, ``a[]`` for the items of a list."""
    paths = []
    if isinstance(value, dict):
        for key, child in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths += [path, *key_paths(child, path)]
    elif isinstance(value, list):
        for child in value:
            paths += key_paths(child, f"{prefix}[]")
    return paths


def unknown_keys(document: dict, known: set[str]) -> list[str]:
    """The key paths of ``document`` the chart does not have: neither listed nor below a free (``.*``) path."""
    free = {key[: -len(".*")] for key in known if key.endswith(".*")}

    def covered(path: str) -> bool:
        if path in known or path in free:
            return True
        return any(path.startswith(f"{prefix}.") or path.startswith(f"{prefix}[]") for prefix in free)

    return sorted({path for path in key_paths(document) if not covered(path)})


def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def test_every_key_is_a_key_of_the_chart() -> None:
    assert unknown_keys(values(), chart_keys()) == []


def test_a_misspelt_or_invented_key_is_named() -> None:
    document = {"dagsterWebserver": {"replicaCont": 1, "image": {"tag": "1"}}, "runLauncher": {"config": {"k8s": {}}}}
    assert unknown_keys(document, chart_keys()) == [
        "dagsterWebserver.replicaCont",
        "runLauncher.config.k8s",
    ]


def component(path: tuple) -> dict:
    found: object = values()
    for step in path:
        found = found[step]
    return found


@pytest.mark.parametrize("name", COMPONENTS)
def test_each_component_is_valid_kubernetes_and_runs_as_non_root(name: str) -> None:
    settings = component(COMPONENTS[name])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": {
            "securityContext": settings["podSecurityContext"],
            "containers": [
                {
                    "name": "probe",
                    "image": "probe",
                    "securityContext": settings["securityContext"],
                    "resources": settings["resources"],
                    "volumeMounts": settings["volumeMounts"],
                }
            ],
            "volumes": settings["volumes"],
        },
    }
    kubernetes_validate.validate(pod, "1.20", strict=True)
    assert settings["podSecurityContext"]["runAsNonRoot"] is True
    assert settings["securityContext"]["readOnlyRootFilesystem"] is True
    assert settings["envConfigMaps"] == [{"name": "mlplatform-env"}]
    assert settings["envSecrets"] == [{"name": "mlplatform-secrets"}]


def test_runs_and_steps_get_the_same_pods_as_with_the_plain_manifests() -> None:
    launcher = values()["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    config = launcher["config"]["k8sRunLauncher"]
    assert config["envSecrets"] == [{"name": "mlplatform-secrets"}]
    assert config["runK8sConfig"]["podSpecConfig"]["securityContext"]["runAsNonRoot"] is True
    assert config["securityContext"]["readOnlyRootFilesystem"] is True
    assert values()["dagster-user-deployments"]["deployments"][0]["includeConfigInLaunchedRuns"] == {"enabled": True}


def test_the_instance_matches_deploy_dagster_yaml() -> None:
    production = production_config()
    chart = values()
    queue = chart["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queue["maxConcurrentRuns"] == production["run_queue"]["max_concurrent_runs"]
    assert queue["tagConcurrencyLimits"] == production["run_queue"]["tag_concurrency_limits"]
    monitoring = chart["dagsterDaemon"]["runMonitoring"]
    assert monitoring == {
        "enabled": True,
        "startTimeoutSeconds": production["run_monitoring"]["start_timeout_seconds"],
        "pollIntervalSeconds": production["run_monitoring"]["poll_interval_seconds"],
    }
    logs = chart["computeLogManager"]["config"]["s3ComputeLogManager"]
    expected = production["compute_logs"]["config"]
    assert (logs["bucket"], logs["prefix"]) == (expected["bucket"], expected["prefix"])
    assert logs["uploadExtraArgs"] == expected["upload_extra_args"]
    assert chart["retention"]["schedule"]["purgeAfterDays"] == production["retention"]["schedule"]["purge_after_days"]
    sensor = production["retention"]["sensor"]["purge_after_days"]
    assert {k: v for k, v in chart["retention"]["sensor"]["purgeAfterDays"].items() if k in sensor} == sensor
    assert chart["postgresql"]["postgresqlScheme"] == production["storage"]["postgres"]["postgres_db"]["scheme"]
    assert chart["telemetry"] == {"enabled": False}


def test_no_password_is_in_the_file() -> None:
    paths = key_paths(values())
    assert not [path for path in paths if "password" in path.lower() and path != "generatePostgresqlPasswordSecret"]
    assert values()["generatePostgresqlPasswordSecret"] is False and values()["global"]["postgresqlSecretName"]
