"""The champion on Kubernetes: latency and errors through its Service while a new version rolls out, against the
same load at rest, in the same run; how long a rollout takes; and how long a version that never gets ready
takes to be undone, from the apply to the old version serving alone.

It runs the graph once with MLPLATFORM_DEPLOY=k8s in a namespace of its own (created and deleted here), so the
bento is built, containerized, pushed and rolled out with two replicas as a user's would be. Then, with one
client sending a held-out row to /predict through the Service's ClusterIP, one request after another (each on
a new connection):

- at rest: ``--seconds`` of load on the running version;
- rollout: the same bento as another image (one LABEL on top, so another digest and so a new ReplicaSet)
  rolled out by ``KubernetesDeployer.deploy`` (apply, wait for the rollout, the smoke prediction, the
  error-rate watch) under the same load, for at least ``--seconds``;
- rollback: that image with MLPLATFORM_AUTH set to a value the service refuses at start-up, so its pods crash
  and never get ready; deployed the same way, under load, and rolled back automatically.

    .venv/bin/python bench/rollout.py            # 30 s of load per side (~4 min, the graph run included)
    .venv/bin/python bench/rollout.py --smoke    # 5 s per side (~2.5 min)

Needs a cluster: the machine's local cluster (``shared/k8s/local-cluster``, started if it is not running), or
the KUBECONFIG, DOCKER_HOST and MLPLATFORM_REGISTRY of the environment when it exports them; without either it
says so and exits 0. Exit status 3 when a target of issue #13 is not met: no failed request during the rollout,
p99 during it <= 1.5x at rest, and the unready version undone within 120 s.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from pathlib import Path

import yaml

from bench import common
from mlplatform.lib.deployment import kubernetes as manifests
from mlplatform.lib.spec import default_spec_path, load_spec
from mlplatform_tests.cluster import derived_image, local_cluster, local_cluster_script
from mlplatform_tests.load import Answers, LoadLoop

INTERVAL = 0.02  # seconds between one answer and the next request: one steady client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_standard_arguments(parser, "5 s of load per side")
    parser.add_argument("--seconds", type=float, default=30.0, help="load at rest, and at least this long in a rollout")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the home, spec and logs here")
    args = parser.parse_args(argv)
    seconds = 5.0 if args.smoke else args.seconds
    if local_cluster_script() is None and not os.environ.get("KUBECONFIG"):
        print("skipped: no cluster here (no shared/k8s/local-cluster, no KUBECONFIG)")
        return common.EXIT_OK
    print(f"machine: {common.machine()}")
    with common.workdir(args.workdir, "bench-kubernetes-") as folder, local_cluster() as environment:
        os.environ.update(environment)
        return measure(folder, environment, seconds, args)


def measure(folder: Path, environment: dict[str, str], seconds: float, args: argparse.Namespace) -> int:
    from kubernetes import client

    from mlplatform.resources import kubernetes_deploy

    api = kubernetes_deploy.connect(environment.get("KUBECONFIG"), None)
    namespace = f"mlp-bench-k8s-{secrets.token_hex(3)}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        token = secrets.token_urlsafe(24)
        deployer = kubernetes_deploy.KubernetesDeployer(api, namespace, token=token)
        return measure_in(folder, environment, namespace, deployer, seconds, args)
    finally:
        client.CoreV1Api(api).delete_namespace(namespace)


def measure_in(folder, environment, namespace, deployer, seconds, args) -> int:
    from mlplatform.cli import opened_instance
    from mlplatform.defs.deployment.assets import prediction_check
    from mlplatform.summary import latest_metadata

    spec = write_spec(folder)
    home = folder / "home"
    extra = environment | {
        "MLPLATFORM_DEPLOY": "k8s",
        "MLPLATFORM_K8S_NAMESPACE": namespace,
        "MLPLATFORM_API_TOKEN": deployer.token(),
    }
    graph = common.run_cli(["run", "--spec", str(spec)], home=home, log=folder / "run.log", extra=extra)
    with opened_instance(home / "dagster") as instance:
        deployed = latest_metadata(instance, "kubernetes_deployment")
    print(
        f"graph run (train, bento, containerize, push, first rollout of 2 replicas): {graph.wall:.0f} s; "
        f"first rollout {deployed['rollout_seconds']:.0f} s; {deployed['model_tag']} at revision {deployed['revision']}"
    )
    url, tag, image = deployed["url"], deployed["model_tag"], deployed["image_digest"]
    row = json.loads(deployed["example_row"])
    settings = load_spec(spec).deployment
    check = prediction_check(row, tag)
    registry = environment.get("MLPLATFORM_REGISTRY") or os.environ["MLPLATFORM_REGISTRY"]

    with LoadLoop(url, deployer.token(), row, interval=INTERVAL) as rest:
        time.sleep(seconds)
    relabelled = derived_image(image, registry, "predictor-relabelled", f"LABEL mlplatform.bench={time.time_ns()}")
    rollout, during = under_load(deployer, url, row, seconds, relabelled, tag, settings, check)
    unready = derived_image(relabelled, registry, "predictor-unready", "ENV MLPLATFORM_AUTH=refused")
    rollback, while_failing = under_load(deployer, url, row, seconds, unready, tag, settings, check)

    show("at rest", rest)
    show("during the rollout", during)
    show("during the failed rollout and its rollback", while_failing)
    undone = rollback.rollout_seconds + (rollback.rollback_seconds or 0.0)
    print(f"rollout: {rollout.rollout_seconds:.1f} s from the apply to every new pod ready and the old ones gone")
    print(
        f"rollback: {rollback.reason[:160]}\n  detected {rollback.rollout_seconds:.1f} s after the apply, old version "
        f"serving alone {rollback.rollback_seconds or 0:.1f} s later: {undone:.1f} s in all"
    )
    p99_ratio = during.p99() / rest.p99()
    milliseconds = f"{during.p99() * 1e3:.1f} / {rest.p99() * 1e3:.1f} ms"
    common.ratio_line("p99 during a rollout ÷ at rest", p99_ratio, milliseconds)
    common.ratio_line("rollback time ÷ 120 s goal", undone / 120, f"{undone:.1f} s")
    different = []
    if rollout.rolled_back or rollout.serving.image != relabelled:
        different.append(f"the rollout did not end on the new image: {rollout.reason or rollout.serving.image}")
    if not rollback.rolled_back or rollback.serving.image != relabelled:
        different.append(f"the unready version was not rolled back to the running one: {rollback.serving.image}")
    saved = common.save_results(
        args.results,
        "rollout",
        {
            "machine": common.machine(),
            "seconds": seconds,
            "graph_run_seconds": graph.wall,
            "first_rollout_seconds": deployed["rollout_seconds"],
            "rest": summary(rest),
            "rollout": summary(during) | {"seconds": rollout.rollout_seconds},
            "rollback": summary(while_failing)
            | {"detected_seconds": rollback.rollout_seconds, "undone_seconds": rollback.rollback_seconds},
            "reason": rollback.reason,
        },
    )
    print(f"results: {saved}")
    targets = [
        common.Target("failed requests during the rollout", len(during.failures), "<=", 0),
        common.Target("failed requests during the failed rollout", len(while_failing.failures), "<=", 0),
        common.Target("p99 during a rollout ÷ at rest", p99_ratio, "<=", 1.5),
        common.Target("seconds from a failing version's apply to the old one serving alone", undone, "<=", 120),
    ]
    return common.verdict(targets, smoke=args.smoke, different_work=different)


def under_load(deployer, url, row, seconds, image, tag, settings, check):
    """``image`` deployed as ``tag`` under the load loop, kept loading for at least ``seconds``."""
    release = manifests.ModelDeployment("penguins", image, tag, settings, namespace=deployer.namespace)
    started = time.monotonic()
    with LoadLoop(url, deployer.token(), row, interval=INTERVAL) as answers:
        outcome = deployer.deploy(release, check=check)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    return outcome, answers


def show(what: str, answers: Answers) -> None:
    print(
        f"{what:<44} {answers.sent:>5} requests, {len(answers.failures)} failed, "
        f"p99 {answers.p99() * 1e3:.1f} ms" + (f"; first failure: {answers.failures[0]}" if answers.failures else "")
    )


def summary(answers: Answers) -> dict:
    return {"requests": answers.sent, "failed": len(answers.failures), "p99": answers.p99(), "models": answers.models}


def write_spec(folder: Path) -> Path:
    """The bundled example with the benches' fixed training budget, small pods, and a 5 s error-rate watch."""
    spec = common.write_spec(folder, default_spec_path().parent / "penguins.csv", common.FIXED_TRAINING)
    document = yaml.safe_load(spec.read_text())
    document["deployment"] |= {"cpu": "100m", "memory": "256Mi", "rollout_timeout_seconds": 150, "watch_seconds": 5}
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    return spec


if __name__ == "__main__":
    sys.exit(main())
