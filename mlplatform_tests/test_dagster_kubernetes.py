"""Dagster on a real Kubernetes cluster, deployed from deploy/kubernetes: one run of the bundled example launched
through the webserver's Service, taken off the queue by the daemon, run by K8sRunLauncher in a pod of its own,
each step in a pod of its own (MLPLATFORM_EXECUTOR=k8s), against PostgreSQL and an S3 server on this machine
(MLPLATFORM_ENV=cloud). Everything is read back from where it landed: the runs' events from the database, the
artifacts and step logs from the bucket, the Jobs and pods from the cluster."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from mlplatform.definitions import MATERIALIZE_ALL
from mlplatform.lib.spec import default_spec_path, load_spec
from mlplatform_tests.dagster_kubernetes import cloud_settings, dagster_on_kubernetes
from mlplatform_tests.servers import (
    PostgresServer,
    S3Bucket,
    S3Server,
    running_moto_server,
    running_postgres,
)
from mlplatform_tests.servers_dagster import launch_job, wait_for_code_location, wait_for_run
from mlplatform_tests.system import postgres_bin_dir
from mlplatform_tests.user_code_image import build_and_push

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

PREFIX = "mlplatform"
LOG_PREFIX = "dagster/compute-logs"
RUN_SECONDS = 1800  # about 20 step pods, each importing the platform, on 2 shared cores


@pytest.fixture(scope="module")
def host(cluster_environment: dict[str, str]) -> str:
    """Where pods reach this machine: the servers below listen there (the session's cluster is up for the tier)."""
    return cluster_environment["MLPLATFORM_HOST_FROM_PODS"]


@pytest.fixture(scope="module")
def postgres(host: str) -> Iterator[PostgresServer]:
    with running_postgres(postgres_bin_dir(), host=host) as server:
        yield server


@pytest.fixture(scope="module")
def s3(host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_moto_server(tmp_path_factory.mktemp("moto"), host=host) as server:
        yield server


def rows(postgres: PostgresServer, database: str, query: str, *parameters: object) -> list[tuple]:
    with postgres.connect(database) as connection:
        return connection.execute(query, parameters or None).fetchall()


def test_a_run_on_kubernetes_runs_each_step_in_its_own_pod_against_postgres_and_s3(
    cluster_environment: dict[str, str], postgres: PostgresServer, s3: S3Server
) -> None:
    environment = {**os.environ, **cluster_environment}
    image = build_and_push(cluster_environment["MLPLATFORM_REGISTRY"], environment)
    bucket = S3Bucket.create(s3)
    database = postgres.create_database()
    settings, secrets = cloud_settings(postgres, database, bucket, PREFIX, LOG_PREFIX)

    with dagster_on_kubernetes(environment, image.reference, settings, secrets) as dagster:
        wait_for_code_location(dagster)
        run_id = launch_job(dagster, MATERIALIZE_ALL)
        wait_for_run(dagster, run_id, timeout=RUN_SECONDS)
        jobs = dagster.get("jobs", "-l", f"dagster/run-id={run_id}")
        pods = dagster.get("pods", "-l", f"dagster/run-id={run_id}")
        everything_but_secrets = [dagster.get(kind) for kind in ("configmaps", "deployments", "jobs", "pods")]

    # The password reached the pods only through the Secret: no object spells it out.
    assert postgres.password not in json.dumps(everything_but_secrets)

    # The database has the run, finished, and its steps' events.
    assert rows(postgres, database, "SELECT status FROM runs WHERE run_id = %s", run_id) == [("SUCCESS",)]

    def steps(event: str) -> set[str]:
        query = "SELECT step_key FROM event_logs WHERE run_id = %s AND dagster_event_type = %s"
        return {step for (step,) in rows(postgres, database, query, run_id, event)}

    started, succeeded = steps("STEP_START"), steps("STEP_SUCCESS")
    assert started == succeeded, f"steps started but not succeeded: {started - succeeded}"
    candidates = load_spec(default_spec_path()).training.candidates
    tuning = {f"candidate_models.tune_candidate[{name}]" for name in candidates}
    assert tuning <= succeeded, f"candidate steps missing from the run's events: {tuning - succeeded}"
    materialized = {
        tuple(json.loads(key))
        for (key,) in rows(
            postgres,
            database,
            "SELECT asset_key FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            run_id,
        )
    }
    for asset in (
        "raw_batch",
        "accepted_data",
        "feature_pipeline",
        "trained_model",
        "evaluation_report",
        "champion_model",
    ):
        assert (asset,) in materialized, f"no materialization of {asset} in Postgres: {sorted(materialized)}"

    # One Job for the run, one per step, each run by a pod of its own: not on the host's network, not as root.
    by_component = {}
    for job in jobs:
        by_component.setdefault(job["metadata"]["labels"]["app.kubernetes.io/component"], []).append(job)
    assert len(by_component.get("run_worker", [])) == 1, sorted(job["metadata"]["name"] for job in jobs)
    step_jobs = {job["metadata"]["labels"]["dagster/op"]: job for job in by_component.get("step_worker", [])}
    assert len(step_jobs) == len(started), f"{len(step_jobs)} step Jobs for {len(started)} steps: {sorted(step_jobs)}"
    assert len(pods) == len(jobs), [pod["metadata"]["name"] for pod in pods]
    for pod in pods:
        spec = pod["spec"]
        assert not spec.get("hostNetwork"), pod["metadata"]["name"]
        assert spec["securityContext"].get("runAsNonRoot") is True, pod["metadata"]["name"]
        [container] = spec["containers"]
        assert container["image"] == image.reference, (pod["metadata"]["name"], container["image"])
        assert container["securityContext"].get("readOnlyRootFilesystem") is True, pod["metadata"]["name"]
    # Each candidate search got the cores and memory the spec's training.resources ask for.
    wanted = load_spec(default_spec_path()).training.resources
    for name in candidates:
        label = f"candidate_models.tune_candidate-{name}"
        assert label in step_jobs, f"no Job for {name}'s search: {sorted(step_jobs)}"
        [container] = step_jobs[label]["spec"]["template"]["spec"]["containers"]
        requested = {"cpu": wanted.cpu, "memory": wanted.memory}
        assert container["resources"] == {"requests": requested, "limits": requested}, container["resources"]

    # The bucket holds the run's artifacts and step logs, every object encrypted, nothing outside the two prefixes.
    client = s3.client()
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name)
        for item in page.get("Contents", [])
    ]
    outside = [key for key in keys if not key.startswith((f"{PREFIX}/", f"{LOG_PREFIX}/"))]
    assert not outside, f"objects outside {PREFIX}/ and {LOG_PREFIX}/: {outside}"
    assert any(key.startswith(f"{PREFIX}/") and "trained_model" in key for key in keys), keys
    assert any(key.startswith(f"{PREFIX}/models/") for key in keys), f"no model exported to the bucket: {keys}"
    logs = [key for key in keys if key.startswith(f"{LOG_PREFIX}/") and run_id in key]
    assert logs, f"no step log of run {run_id} in the bucket: {keys}"
    unencrypted = [
        key for key in keys if client.head_object(Bucket=bucket.name, Key=key).get("ServerSideEncryption") != "AES256"
    ]
    assert not unencrypted, f"objects written without server-side encryption: {unencrypted}"
