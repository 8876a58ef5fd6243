"""A candidate's search in a pod of its own (``training.candidates.<name>.resources.pod``), from the step's side:
its inputs written to the artifact store, the pod launched through Dagster Pipes, the tuned candidate it wrote
read back and checked against what it reported."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from mlplatform.lib.spec import CandidatePod, ProjectSpec
from mlplatform.lib.storage import is_local
from mlplatform.lib.training import pods
from mlplatform.lib.training.candidates import TunedCandidate
from mlplatform.resources import ArtifactStore
from mlplatform.resources.pods import CandidatePods, PodError


def search_in_pod(
    context: dg.OpExecutionContext,
    name: str,
    pod: CandidatePod,
    features: np.ndarray,
    target: pd.Series,
    spec: ProjectSpec,
    artifacts: ArtifactStore,
    launcher: CandidatePods,
) -> tuple[TunedCandidate, dict]:
    """The candidate tuned in its pod, and what the step's output says about the pod."""
    folder = artifacts.path("steps", context.run_id, "pods", name)  # forgotten with the run's other step outputs
    if is_local(folder):
        raise PodError(
            f"training.candidates.{name}.resources.pod: the pod reads its inputs from and writes its model to the "
            f"artifact store, and {artifacts.root} is a folder on this machine, out of a pod's reach: use "
            "MLPLATFORM_ENV=cloud (S3), or leave resources.pod out to search in the step's own process"
        )
    inputs, output = folder / "inputs.joblib", folder / "candidate.joblib"
    pods.write_inputs(inputs, features, target)
    try:
        messages = launcher.run(
            context, project=spec.name, candidate=name, pod=pod, extras=pods.extras(name, spec, inputs, output)
        )
    except PodError:
        raise
    except Exception as exc:  # the pod failed, or Kubernetes refused it: name the candidate, keep the cause
        raise PodError(f"{name}: its pod failed ({type(exc).__name__}: {exc})") from exc
    finally:
        inputs.unlink(missing_ok=True)  # the training features: not kept once the search is over
    reports = [message for message in messages if isinstance(message, dict) and message.get("candidate") == name]
    if not reports:
        raise PodError(f"{name}: its pod ended without reporting a result through Dagster Pipes (model {output})")
    report = reports[-1]
    tuned = pods.read_joblib(output)
    if not isinstance(tuned, TunedCandidate) or (tuned.cv_score, tuned.trials) != (
        report["cv_score"],
        report["trials"],
    ):
        raise PodError(
            f"{name}: {output} does not hold the search its pod reported (cv score {report['cv_score']}, "
            f"{report['trials']} trial(s)): another run may have written there"
        )
    metadata = {
        "pod_image": pod.image or launcher.image or "",
        "pod_model": dg.MetadataValue.path(str(output)),
        "pod_threads": report["threads"],
    }
    return tuned, metadata
