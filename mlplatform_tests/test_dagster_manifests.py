"""deploy/kubernetes, checked offline: valid against the Kubernetes schemas, the instance ConfigMap the same
deploy/dagster.yaml plus a K8sRunLauncher that Dagster's own config schema accepts, every pod non-root without
the host's network, and no secret in any file. test_dagster_kubernetes.py deploys them to a real cluster."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher

from mlplatform_tests.dagster_kubernetes import MANIFESTS
from mlplatform_tests.test_deploy_instance import PRODUCTION_CONFIG

SECRET_VARIABLES = {"DAGSTER_PG_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
FROM_THE_POD = {"DAGSTER_K8S_NAMESPACE"}  # the downward API: the namespace the pod runs in


def objects() -> list[dict]:
    order = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    return [doc for name in order for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc]


def named(kind: str, name: str) -> dict:
    [found] = [obj for obj in objects() if obj["kind"] == kind and obj["metadata"]["name"] == name]
    return found


def instance(tmp_path: Path) -> dict:
    (tmp_path / "dagster.yaml").write_text(named("ConfigMap", "dagster-instance")["data"]["dagster.yaml"])
    config, custom_instance_class = dagster_instance_config(str(tmp_path), "dagster.yaml")
    assert custom_instance_class is None
    return dict(config)


def pod_specs() -> dict[str, dict]:
    return {
        obj["metadata"]["name"]: obj["spec"]["template"]["spec"] for obj in objects() if obj["kind"] == "Deployment"
    }


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"])
    assert listed == {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("version", ["1.20", "1.28"])
def test_every_object_is_valid_kubernetes(version: str) -> None:
    for obj in objects():
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_instance_is_deploy_dagster_yaml_plus_the_kubernetes_run_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_K8S_NAMESPACE", "dagster")  # the pods' own namespace (the downward API)
    config = instance(tmp_path)
    production, _ = dagster_instance_config(str(PRODUCTION_CONFIG.parent), PRODUCTION_CONFIG.name)

    assert {key: value for key, value in config.items() if key != "run_launcher"} == dict(production)
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    checked = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert checked.success, checked.errors
    assert checked.value["job_namespace"] == "dagster"
    assert launcher["config"]["instance_config_map"] == "dagster-instance"
    account = launcher["config"]["service_account_name"]
    assert named("ServiceAccount", account) and named("RoleBinding", account)["subjects"][0]["name"] == account


def test_every_variable_the_instance_reads_is_given_and_secrets_come_only_from_the_secret(tmp_path: Path) -> None:
    text = named("ConfigMap", "dagster-instance")["data"]["dagster.yaml"]
    read = {value["env"] for value in _env_references(yaml.safe_load(text))}
    settings = set(named("ConfigMap", "mlplatform-env")["data"])
    assert read - settings - FROM_THE_POD == {"DAGSTER_PG_PASSWORD"}
    assert not settings & SECRET_VARIABLES
    assert not [obj for obj in objects() if obj["kind"] == "Secret"], "a Secret in a file: create it by hand"
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            assert not {variable["name"] for variable in container.get("env", [])} & SECRET_VARIABLES, name
            sources = [next(iter(source.values()))["name"] for source in container["envFrom"]]
            assert sources == ["mlplatform-env", "mlplatform-secrets"], name
    assert launcher_config(tmp_path)["env_secrets"] == ["mlplatform-secrets"]


def launcher_config(tmp_path: Path) -> dict:
    return instance(tmp_path)["run_launcher"]["config"]


def _env_references(value: object) -> list[dict]:
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            return [value]
        return [found for item in value.values() for found in _env_references(item)]
    if isinstance(value, list):
        return [found for item in value for found in _env_references(item)]
    return []


def test_no_pod_runs_as_root_or_on_the_host_network(tmp_path: Path) -> None:
    for name, spec in pod_specs().items():
        assert not spec.get("hostNetwork"), name
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, name
            assert "limits" in container["resources"] and "requests" in container["resources"], name
    # the runs' and steps' pods, made by K8sRunLauncher and k8s_job_executor from the instance
    launcher = launcher_config(tmp_path)
    assert launcher["run_k8s_config"]["pod_spec_config"]["security_context"]["run_as_non_root"] is True
    assert launcher["security_context"]["read_only_root_filesystem"] is True
    assert "host_network" not in str(launcher)


def test_only_the_pods_that_start_jobs_get_an_api_token() -> None:
    specs = pod_specs()
    assert specs["mlplatform-code"]["automountServiceAccountToken"] is False
    assert {name for name, spec in specs.items() if spec.get("serviceAccountName") == "dagster"} == {
        "dagster-webserver",
        "dagster-daemon",
    }
    rules = named("Role", "dagster")["rules"]
    jobs = next(rule for rule in rules if "jobs" in rule["resources"])
    assert {"create", "get", "delete"} <= set(jobs["verbs"]) and jobs["apiGroups"] == ["batch"]
    # what a step needs for a candidate's own pod (PipesK8sClient; README, "A candidate in a pod of its own")
    granted = {(resource, verb) for rule in rules for resource in rule["resources"] for verb in rule["verbs"]}
    assert {("pods", "create"), ("pods", "get"), ("pods", "list"), ("pods", "delete")} <= granted
    assert {("pods/log", "get"), ("events", "list")} <= granted
    assert all("secrets" not in rule["resources"] for rule in rules)
