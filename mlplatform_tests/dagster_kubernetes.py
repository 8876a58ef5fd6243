"""deploy/kubernetes applied to a real cluster, as a user applies it, in a namespace of its own: the code server,
the webserver and the daemon, with the instance ConfigMap, the account and Role of the run launcher, and the
Secret a user creates by hand. What a user edits (namespace, image, the addresses in mlplatform-env) is set the
way kustomize would; nothing else of the files is changed."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import yaml

from mlplatform_tests.cluster import PROJECT_ROOT
from mlplatform_tests.servers import FAKE_CREDENTIALS, PostgresServer, S3Bucket
from mlplatform_tests.servers_dagster import DagsterServers

MANIFESTS = PROJECT_ROOT / "deploy" / "kubernetes"
IMAGE_NAME = "mlplatform"  # the name kustomization.yaml's `images` replaces
DEPLOYMENTS = ("mlplatform-code", "dagster-webserver", "dagster-daemon")
ROLLOUT_SECONDS = 600  # three pods importing the platform on 2 shared cores; the image pulled once


class KubernetesError(RuntimeError):
    pass


def kubectl(environment: Mapping[str, str], *arguments: str, stdin: str | None = None, timeout: float = 120) -> str:
    done = subprocess.run(
        ["kubectl", *arguments], input=stdin, capture_output=True, text=True, timeout=timeout, env=dict(environment)
    )
    if done.returncode != 0:
        raise KubernetesError(f"kubectl {' '.join(arguments)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def manifests(namespace: str, image: str, settings: Mapping[str, str]) -> list[dict]:
    """Every object of deploy/kubernetes in kustomization.yaml's order, in ``namespace``, running ``image``, with
    ``settings`` in place of mlplatform-env's example values."""
    order = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    objects = [doc for name in order for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc]
    for obj in objects:
        obj["metadata"]["namespace"] = namespace
        for subject in obj.get("subjects", []):
            subject["namespace"] = namespace
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "mlplatform-env":
            obj["data"] = {**obj["data"], **settings}
        for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            if container["image"] == IMAGE_NAME:
                container["image"] = image
            for variable in container.get("env", []):
                if variable["name"] == "DAGSTER_CURRENT_IMAGE":
                    variable["value"] = image
    return objects


def secret(namespace: str, values: Mapping[str, str]) -> dict:
    """The Secret deploy/README.md has a user create by hand (`kubectl create secret generic mlplatform-secrets`)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "mlplatform-secrets", "namespace": namespace},
        "type": "Opaque",
        "stringData": dict(values),
    }


@dataclass
class DagsterOnKubernetes:
    """A running deployment: its namespace and the webserver's Service; ``graphql`` as for ``dagster dev``."""

    environment: Mapping[str, str]
    namespace: str
    url: str

    graphql = DagsterServers.graphql

    def log_tail(self, lines: int = 60) -> str:
        """The end of the webserver's and the daemon's logs (the run and step pods' are in their Jobs)."""
        tails = []
        for name in DEPLOYMENTS[1:]:
            try:
                text = kubectl(self.environment, "-n", self.namespace, "logs", f"deployment/{name}", f"--tail={lines}")
            except KubernetesError as error:
                text = str(error)
            tails.append(f"--- {name}\n{text}")
        return "\n".join(tails)

    def get(self, kind: str, *selectors: str) -> list[dict]:
        return json.loads(kubectl(self.environment, "-n", self.namespace, "get", kind, *selectors, "-o", "json"))[
            "items"
        ]


@contextmanager
def dagster_on_kubernetes(
    environment: Mapping[str, str], image: str, settings: Mapping[str, str], secrets: Mapping[str, str]
) -> Iterator[DagsterOnKubernetes]:
    """deploy/kubernetes in a new namespace ``mlp-dagster-<random>``, up until every Deployment has rolled out and
    the webserver answers through its Service; the namespace, and all the runs' Jobs and pods in it, deleted on
    the way out."""
    namespace = f"mlp-dagster-{uuid.uuid4().hex[:8]}"
    kubectl(environment, "create", "namespace", namespace)
    try:
        objects = [secret(namespace, secrets), *manifests(namespace, image, settings)]
        kubectl(
            environment, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
        )
        for name in DEPLOYMENTS:
            kubectl(
                environment,
                "-n",
                namespace,
                "rollout",
                "status",
                f"deployment/{name}",
                f"--timeout={ROLLOUT_SECONDS}s",
                timeout=ROLLOUT_SECONDS + 30,
            )
        address = kubectl(
            environment,
            "-n",
            namespace,
            "get",
            "service",
            "dagster-webserver",
            "-o",
            "jsonpath={.spec.clusterIP}:{.spec.ports[0].port}",
        )
        yield DagsterOnKubernetes(environment, namespace, f"http://{address}")
    finally:
        kubectl(environment, "delete", "namespace", namespace, "--wait=false")


def cloud_settings(
    postgres: PostgresServer, database: str, bucket: S3Bucket, prefix: str, log_prefix: str
) -> tuple[dict[str, str], dict[str, str]]:
    """mlplatform-env's values and the Secret's for a database and a bucket on this machine's servers (bound to
    the address pods reach the host at): MLPLATFORM_ENV=cloud with every artifact under ``prefix`` and the step
    logs under ``log_prefix``."""
    settings = {
        "MLPLATFORM_BUCKET": bucket.name,
        "MLPLATFORM_PREFIX": prefix,
        "DAGSTER_COMPUTE_LOG_BUCKET": bucket.name,
        "DAGSTER_COMPUTE_LOG_PREFIX": log_prefix,
        "AWS_ENDPOINT_URL_S3": bucket.server.endpoint_url,
        **{key: value for key, value in postgres.environment(database).items() if key != "DAGSTER_PG_PASSWORD"},
    }
    secrets = {
        "DAGSTER_PG_PASSWORD": postgres.password,
        "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }
    return settings, secrets
