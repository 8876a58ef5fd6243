"""A candidate's search in a pod of its own, when the spec's ``training.candidates.<name>.resources.pod`` asks for
one: the pod as Kubernetes objects (plain dicts, what ``PipesK8sClient`` is given as the pod's spec and metadata;
Dagster Pipes adds the image, the command, the name and its own environment), and what the launching step and
the pod exchange through the artifact store."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping

import joblib
import numpy as np
import pandas as pd
from upath import UPath

from mlplatform.lib.spec import CandidatePod, ProjectSpec
from mlplatform.lib.storage import is_local, write_atomically
from mlplatform.lib.training import candidates, threads
from mlplatform.lib.training.candidates import TunedCandidate

# What the pod runs: the platform's entry point for one search (``mlplatform.pods.tune_candidate``).
COMMAND = ("python", "-m", "mlplatform.pods.tune_candidate")
CANDIDATE_LABEL = "mlplatform/candidate"
PART_OF = {"app.kubernetes.io/part-of": "mlplatform", "app.kubernetes.io/component": "candidate-search"}
SCRATCH = "/tmp"  # the one writable folder of a read-only root: HOME of the platform's image, joblib's temp files


def pod_spec(pod: CandidatePod) -> dict:
    """The pod's spec: the resources asked for, the node it may run on, how credentials reach it (a service
    account, Secrets as environment), non-root on a read-only root filesystem with a scratch emptyDir."""
    requests, limits = {}, {}
    if pod.cpu:
        requests["cpu"] = pod.cpu
    if pod.memory:
        requests["memory"] = limits["memory"] = pod.memory
    if pod.gpu:
        limits[pod.gpu_resource] = str(pod.gpu)  # extended resources: the limit is the request
    container: dict = {
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
    }
    if requests or limits:
        container["resources"] = {key: value for key, value in (("requests", requests), ("limits", limits)) if value}
    if pod.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": secret}} for secret in pod.env_from_secrets]
    spec: dict = {
        "containers": [container],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "restartPolicy": "Never",
        # No API access from the search: it talks to object storage only.
        "automountServiceAccountToken": False,
    }
    if pod.node_selector:
        spec["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        spec["tolerations"] = [toleration.model_dump(exclude_none=True) for toleration in pod.tolerations]
    if pod.service_account:
        spec["serviceAccountName"] = pod.service_account
    return spec


def pod_metadata(project: str, candidate: str) -> dict:
    """Labels that say what the pod is: the project's candidate search (``kubectl get pods -l ...``)."""
    return {"labels": {**PART_OF, "mlplatform/project": label_value(project), CANDIDATE_LABEL: label_value(candidate)}}


def label_value(text: str) -> str:
    """``text`` as a Kubernetes label value: at most 63 of letters, digits, '-', '_' and '.', alphanumeric at both
    ends."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63]
    return cleaned.strip("-_.")


# What the launching step and the pod exchange: the step writes the search's inputs to the artifact store and
# names them (with the spec and the candidate) in the Pipes extras; the pod writes the tuned candidate beside
# them and reports its numbers as a Pipes message, which the step checks against what it then reads.


def write_inputs(path: UPath, features: np.ndarray, target: pd.Series) -> None:
    write_atomically(path, lambda destination: joblib.dump({"features": features, "target": target}, destination))


def read_joblib(path: UPath) -> object:
    return joblib.load(path.path if is_local(path) else io.BytesIO(path.read_bytes()))


def extras(candidate: str, spec: ProjectSpec, inputs: UPath, output: UPath) -> dict:
    """The Pipes extras of a candidate's pod: JSON only (they travel in an environment variable)."""
    return {"candidate": candidate, "spec": spec.model_dump(mode="json"), "inputs": str(inputs), "output": str(output)}


def search(extras: Mapping) -> tuple[TunedCandidate, dict]:
    """In the pod: tune the candidate the extras name on the inputs they point to, with every core the pod may
    use (it searches alone); write the tuned candidate where they say. The candidate and its report."""
    spec = ProjectSpec.model_validate(extras["spec"])
    name = extras["candidate"]
    chosen = candidates.candidates(spec)
    if name not in chosen:
        raise candidates.CandidateError(f"training.candidates has no {name!r} (it has {', '.join(chosen)})")
    inputs = read_joblib(UPath(extras["inputs"]))
    features, target = inputs["features"], inputs["target"]
    tuned = candidates.tune(name, chosen[name], features, target, spec, threads.threads_per_fit(len(target)))
    output = UPath(extras["output"])
    write_atomically(output, lambda destination: joblib.dump(tuned, destination))
    return tuned, report(tuned, output)


def report(tuned: TunedCandidate, output: UPath) -> dict:
    """What the pod tells the step through Pipes: the search's numbers and where its model is."""
    return {
        "candidate": tuned.name,
        "cv_score": tuned.cv_score,
        "cv_std": tuned.cv_std,
        "trials": tuned.trials,
        "seconds": tuned.seconds,
        "threads": tuned.threads,
        "best_params": tuned.best_params,
        "model": str(output),
    }
