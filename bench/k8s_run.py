"""A Dagster run on Kubernetes against the same run in one process, on the bundled data, and where the difference
goes.

- kubernetes: deploy/kubernetes on the local cluster (shared/k8s/local-cluster), the user-code image built from
  this checkout and pushed to its registry; the job launched through the webserver's Service, taken off the queue
  by the daemon, run by K8sRunLauncher in a pod, each step in a pod of its own (MLPLATFORM_EXECUTOR=k8s).
- in-process: the same job of the same code, `execute_job` with the in-process executor in one child process.

Both sides use the same storage: MLPLATFORM_ENV=cloud on moto's S3 server and a PostgreSQL instance
(deploy/dagster.yaml), both on this machine at the address pods reach it ($MLPLATFORM_HOST_FROM_PODS); each side
its own bucket and database. The run's wall is the run's own (created to finished, from Dagster's run record);
the Kubernetes side's is cut into: the run pod's start, then for each step the pod's start (scheduling, image,
container: Job created to container started), the interpreter's start up to the step's first event (imports,
loading the code location and the instance), the step's own work, and the pod's end (step done to container exit).

    .venv/bin/python bench/k8s_run.py            # materialize_all: every asset of the bundled example (~10 min)
    .venv/bin/python bench/k8s_run.py --smoke    # ingest_batch only: four steps (~3 min)

No target: issue #13 asks for the ratio and where the difference goes. Exit 1 when the two sides did not compute
the same thing (the batch's data version, and in a full run the chosen candidate and its score).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

from bench import common

RUN_SECONDS = 1800
FULL_JOB, SMOKE_JOB = "materialize_all", "ingest_batch"
COMPARED = {"raw_batch": ("data_version", "rows"), "trained_model": ("candidate", "cv_f1_macro")}
PREFIX, LOG_PREFIX = "mlplatform", "dagster/compute-logs"

RUN_QUERY = """
query RunTimes($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status creationTime startTime endTime stepStats { stepKey status startTime endTime } }
  }
}
"""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_standard_arguments(parser, "ingest_batch only (four step pods)")
    parser.add_argument("--workdir", type=Path, help="keep logs and the in-process side's home here")
    parser.add_argument("--child", choices=["in-process"], help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--timings", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _in_process_child(args: argparse.Namespace) -> dict:
    """One run of the job in this process: what the run record says, and the compared metadata."""
    started = time.perf_counter()
    import dagster as dg

    from mlplatform.definitions import reconstructable_job
    from mlplatform.settings import Settings

    imported = time.perf_counter()
    settings = Settings.from_env()
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(reconstructable_job(args.job, settings), instance=instance)
        if not result.success:
            raise RuntimeError(f"the in-process run {result.run_id} failed")
        record = instance.get_run_record_by_id(result.run_id)
        stats = instance.get_run_stats(result.run_id)
        steps = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(result.run_id)}
        compared = {}
        for asset, labels in COMPARED.items():
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            if event is not None:
                metadata = event.asset_materialization.metadata
                compared[asset] = {label: metadata[label].value for label in labels if label in metadata}
    return {
        "imports": imported - started,
        "wall": stats.end_time - record.create_timestamp.timestamp(),
        "steps": steps,
        "compared": compared,
    }


def in_process_side(job: str, env: dict[str, str], folder: Path) -> dict:
    timings = folder / "in-process.json"
    command = [sys.executable, __file__, "--child", "in-process", "--job", job, "--timings", str(timings)]
    child = common.run_child(command, env, folder / "in-process.log", cwd=folder)
    measured = json.loads(timings.read_text())
    return {**measured, "process_wall": child.wall}


def _seconds(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None


def kubernetes_side(dagster, run_id: str, folder: Path) -> dict:
    """The run's record from the webserver and its Jobs, pods and events from the cluster (kept in
    ``kubernetes-raw.json``), then cut along the Jobs' and pods' own times (whole seconds)."""
    from mlplatform_tests.servers_dagster import latest_metadata

    raw = {
        "run": dagster.graphql(RUN_QUERY, runId=run_id)["runOrError"],
        "pods": finished_pods(dagster, run_id),
        "jobs": dagster.get("jobs", "-l", f"dagster/run-id={run_id}"),
        "events": dagster.get("events"),
        "compared": {},
    }
    for asset, labels in COMPARED.items():
        try:
            _, metadata = latest_metadata(dagster, asset)
        except Exception:  # noqa: BLE001 - the smoke job does not make a model: nothing to compare there
            continue
        raw["compared"][asset] = {label: metadata[label] for label in labels if label in metadata}
    (folder / "kubernetes-raw.json").write_text(json.dumps(raw))
    return analyse(raw)


def analyse(raw: dict) -> dict:
    run, pods = raw["run"], raw["pods"]
    jobs = {j["metadata"]["name"]: j for j in raw["jobs"]}
    steps_by_key = {step["stepKey"]: step for step in run["stepStats"]}
    phases: dict[str, list[float]] = {"pod start": [], "interpreter to first event": [], "step": [], "pod end": []}
    run_pod = {}
    for pod in pods:
        labels = pod["metadata"]["labels"]
        created = _seconds(jobs[labels["job-name"]]["metadata"]["creationTimestamp"])
        state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        container_started, container_ended = _seconds(state["startedAt"]), _seconds(state["finishedAt"])
        if labels["app.kubernetes.io/component"] == "run_worker":
            run_pod = {
                "queue": created - run["creationTime"],
                "pod start": container_started - created,
                "to RUN_START": run["startTime"] - container_started,
            }
            continue
        step = next(s for key, s in steps_by_key.items() if labels["dagster/op"] == _label(key))
        phases["pod start"].append(container_started - created)
        phases["interpreter to first event"].append(step["startTime"] - container_started)
        phases["step"].append(step["endTime"] - step["startTime"])
        phases["pod end"].append(container_ended - step["endTime"])
    pulls = [event["message"] for event in raw["events"] if event["reason"] == "Pulled"]
    return {
        "wall": run["endTime"] - run["creationTime"],
        "queued": run["startTime"] - run["creationTime"],
        "run_pod": run_pod,
        "phases": phases,
        "steps": {key: step["endTime"] - step["startTime"] for key, step in steps_by_key.items()},
        "image_pulls": pulls,
        "compared": raw["compared"],
    }


def finished_pods(dagster, run_id: str, timeout: float = 180) -> list[dict]:
    """The run's pods once every container has exited: the run worker's outlives the run's last event."""
    deadline = time.monotonic() + timeout
    while True:
        pods = dagster.get("pods", "-l", f"dagster/run-id={run_id}")
        running = [
            p["metadata"]["name"] for p in pods if "terminated" not in p["status"]["containerStatuses"][0]["state"]
        ]
        if not running:
            return pods
        if time.monotonic() > deadline:
            raise RuntimeError(f"pods of run {run_id} still running {timeout:.0f} s after it ended: {running}")
        time.sleep(2)


def _label(step_key: str) -> str:
    from dagster_k8s.utils import sanitize_k8s_label

    return sanitize_k8s_label(step_key)


def measure(args: argparse.Namespace, folder: Path) -> dict:
    from mlplatform_tests.cluster import local_cluster, local_cluster_script
    from mlplatform_tests.dagster_kubernetes import cloud_settings, dagster_on_kubernetes
    from mlplatform_tests.servers import S3Bucket, running_moto_server, running_postgres
    from mlplatform_tests.servers_dagster import launch_job, wait_for_code_location, wait_for_run
    from mlplatform_tests.system import postgres_bin_dir
    from mlplatform_tests.user_code_image import build_and_push

    if local_cluster_script() is None:
        raise SystemExit("no local-cluster script (set MLPLATFORM_LOCAL_CLUSTER): no Kubernetes to measure on")
    job = SMOKE_JOB if args.smoke else FULL_JOB
    with local_cluster() as cluster:
        host = cluster["MLPLATFORM_HOST_FROM_PODS"]
        environment = {**os.environ, **cluster}
        with running_postgres(postgres_bin_dir(), host=host) as postgres, running_moto_server(folder, host) as s3:
            clock = time.perf_counter()
            image = build_and_push(cluster["MLPLATFORM_REGISTRY"], environment)
            print(
                f"image {image.reference}: built in {image.build_seconds:.1f} s, pushed in {image.push_seconds:.1f} s"
            )
            settings, secrets = cloud_settings(
                postgres, postgres.create_database(), S3Bucket.create(s3), PREFIX, LOG_PREFIX
            )
            with dagster_on_kubernetes(environment, image.reference, settings, secrets) as dagster:
                deployed = time.perf_counter() - clock - image.build_seconds - image.push_seconds
                wait_for_code_location(dagster)
                print(f"deployed (3 Deployments rolled out, the code location loaded) in {deployed:.1f} s", flush=True)
                run_id = launch_job(dagster, job)
                wait_for_run(dagster, run_id, timeout=RUN_SECONDS)
                on_kubernetes = kubernetes_side(dagster, run_id, folder)
            print(f"kubernetes: {job} run {run_id} in {on_kubernetes['wall']:.1f} s", flush=True)
            database = postgres.create_database()
            bucket = S3Bucket.create(s3)
            home = folder / "in-process"
            (home / "dagster").mkdir(parents=True)
            shutil.copy(common.PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster" / "dagster.yaml")
            env = common.child_environment(
                {
                    **settings,
                    **postgres.environment(database),
                    **s3.environment(home),
                    "MLPLATFORM_ENV": "cloud",
                    "MLPLATFORM_EXECUTOR": "in_process",
                    "MLPLATFORM_BUCKET": bucket.name,
                    "DAGSTER_COMPUTE_LOG_BUCKET": bucket.name,
                    "MLPLATFORM_HOME": str(home),
                    "DAGSTER_HOME": str(home / "dagster"),
                }
            )
            in_process = in_process_side(job, env, folder)
            print(f"in-process: {job} in {in_process['wall']:.1f} s", flush=True)
    return {
        "job": job,
        "image": {"build": image.build_seconds, "push": image.push_seconds},
        "deploy": deployed,
        "kubernetes": on_kubernetes,
        "in_process": in_process,
    }


def report(measured: dict) -> None:
    k8s, local = measured["kubernetes"], measured["in_process"]
    phases = k8s["phases"]
    steps = len(phases["step"])
    print(f"\n{measured['job']}: {steps} step pods; wall = run created to run finished (Dagster's run record)")
    print(f"  kubernetes  {k8s['wall']:7.1f} s   (of which {k8s['queued']:.1f} s before the run worker's RUN_START)")
    print(
        f"  in-process  {local['wall']:7.1f} s   (child process {local['process_wall']:.1f} s, "
        f"imports {local['imports']:.1f} s)"
    )
    print("\nwhere the Kubernetes run's time goes (seconds; Kubernetes stamps whole seconds):")
    run_pod = k8s["run_pod"]
    print(
        f"  run pod: run created -> its Job created (the daemon's dequeue) {run_pod['queue']:.0f}, "
        f"-> container started {run_pod['pod start']:.0f}, -> RUN_START {run_pod['to RUN_START']:.0f}"
    )
    for phase, values in phases.items():
        print(f"  per step, {phase:28s} total {sum(values):7.1f}  mean {sum(values) / max(1, len(values)):5.1f}")
    print(
        f"  steps' own work: {sum(phases['step']):.1f} s on Kubernetes, {sum(local['steps'].values()):.1f} s in-process"
    )
    pulls = k8s["image_pulls"]
    fresh = [message for message in pulls if "already present" not in message]
    print(
        f"  image: {len(pulls)} pod(s) started, {len(fresh)} pulled it"
        + (f": {fresh}" if fresh else " (on the node already)")
    )
    common.ratio_line(
        f"{measured['job']} on kubernetes ÷ in-process, run wall",
        k8s["wall"] / local["wall"],
        f"{k8s['wall']:.1f} s / {local['wall']:.1f} s",
    )


def mismatches(measured: dict) -> list[str]:
    k8s, local = measured["kubernetes"]["compared"], measured["in_process"]["compared"]
    if not k8s or set(k8s) != set(local):
        return [f"compared assets differ: kubernetes {sorted(k8s)}, in-process {sorted(local)}"]
    return [
        f"{asset}: kubernetes {k8s[asset]} != in-process {local[asset]}" for asset in k8s if k8s[asset] != local[asset]
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        args.timings.write_text(json.dumps(_in_process_child(args)))
        return 0
    print(common.machine(), flush=True)
    with common.workdir(args.workdir, "mlplatform-bench-k8s-") as folder:
        measured = measure(args, folder)
    report(measured)
    print(f"\nall measurements: {common.save_results(args.results, 'k8s_run', measured)}")
    differing = mismatches(measured)
    if not differing:
        print(
            "both sides read the same batch"
            + ("" if args.smoke else " and chose the same candidate with the same score")
        )
    return common.verdict([], smoke=args.smoke, different_work=differing)


if __name__ == "__main__":
    raise SystemExit(main())
