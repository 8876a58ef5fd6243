"""From the champion to something that answers requests: its bento, its container image, a local server, and a
Kubernetes Deployment of the image. Each is downstream of champion_model, so a new champion (from the gate, or
promoted or rolled back by hand) rebuilds the bento and replaces what serves; a challenger that loses changes
nothing here."""

import json
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from mlplatform.lib.deployment.kubernetes import ModelDeployment
from mlplatform.lib.registry.registry import Promotion
from mlplatform.lib.serving import serving
from mlplatform.resources import (
    ImageRegistry,
    KubernetesServing,
    LocalServing,
    ModelRegistry,
    ProjectSpecResource,
    bentos,
)
from mlplatform.resources.docker import Image
from mlplatform.resources.local_server import RunningServer

if TYPE_CHECKING:  # the kubernetes client is imported by the step that deploys, not by the code location
    from mlplatform.resources.kubernetes_deploy import Outcome


@dataclass(frozen=True)
class Bento:
    tag: str
    model_tag: str


@dg.asset(group_name="deployment", kinds={"bentoml"}, code_version="1")
def prediction_bento(
    context: dg.AssetExecutionContext, champion_model: Promotion, registry: ModelRegistry
) -> dg.Output[Bento]:
    """The prediction service built into a bento pinned to the champion's model version."""
    # the model in this process's BentoML home, where the build looks: imported when the store is elsewhere (S3)
    registry.for_project(champion_model.tag.split(":")[0]).local_path(champion_model.tag)
    tag = bentos.build(champion_model.tag, bentoml_home=registry.bentoml_home)
    context.log.info(f"Built bento {tag} serving {champion_model.tag}")
    return dg.Output(
        Bento(tag=tag, model_tag=champion_model.tag),
        metadata={
            "bento": tag,
            "model_tag": champion_model.tag,
            "serve": dg.MetadataValue.md(f"`BENTOML_HOME={registry.bentoml_home} bentoml serve {tag}`"),
        },
    )


@dg.asset(group_name="deployment", kinds={"docker"}, code_version="1")
def model_image(context: dg.AssetExecutionContext, prediction_bento: Bento, images: ImageRegistry) -> dg.Output[Image]:
    """The champion's bento as a container image, pushed to the image registry."""
    image = images.push(prediction_bento.tag)
    context.log.info(f"Pushed {image.reference} ({image.digest})")
    return dg.Output(
        image,
        metadata={
            "image": image.reference,
            "digest": image.digest,
            "size_mb": round(image.size_bytes / 1e6, 1),
            "model_tag": prediction_bento.model_tag,
        },
    )


def example_row(bento: Bento, holdout_data: pd.DataFrame, registry: ModelRegistry) -> dict:
    """A held-out row as a request body, in the served model's schema."""
    schema = registry.for_project(bento.model_tag.split(":")[0]).load(bento.model_tag).schema
    return serving.request_rows(holdout_data.head(1), schema)[0]


def prediction_check(example: dict, model_tag: str) -> Callable[[str, str], None]:
    """A check a deployment target runs against what it serves: ``example`` through /predict with the token; it
    raises unless the answer comes from ``model_tag``."""

    def answers_a_prediction(url: str, token: str) -> None:
        request = urllib.request.Request(
            f"{url}/predict",
            data=json.dumps(example).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        if answer.get("model_tag") != model_tag:
            raise bentos.BentoError(f"{url} answered for {answer.get('model_tag')}, not {model_tag}")

    return answers_a_prediction


@dg.asset(group_name="deployment", kinds={"bentoml"}, code_version="1")
def local_deployment(
    context: dg.AssetExecutionContext,
    prediction_bento: Bento,
    holdout_data: pd.DataFrame,
    registry: ModelRegistry,
    local_serving: LocalServing,
) -> dg.Output[RunningServer]:
    """The champion's bento served on this machine by `bentoml serve`, replaced when the champion changes."""
    example = example_row(prediction_bento, holdout_data, registry)
    answers_a_prediction = prediction_check(example, prediction_bento.model_tag)
    deployment = local_serving.deployment()
    previous = deployment.current()
    running = deployment.deploy(prediction_bento.tag, prediction_bento.model_tag, check=answers_a_prediction)
    context.log.info(
        f"{running.url} serves {running.model_tag} (bento {running.bento}, pid {running.pid})"
        + (f", replacing {previous.model_tag}" if previous else "")
    )
    token = deployment.token_path
    return dg.Output(
        running,
        metadata={
            "url": dg.MetadataValue.url(running.url),
            "docs": dg.MetadataValue.url(f"{running.url}/"),  # BentoML serves its docs at /; /docs is 404
            "model_tag": running.model_tag,
            "bento": running.bento,
            "replaced": previous.model_tag if previous else "",
            "token": str(token) if token else "MLPLATFORM_API_TOKEN",
            "example_row": json.dumps(example),
            "log": running.log,
            "server": dg.MetadataValue.json(asdict(running)),
        },
    )


@dg.asset(group_name="deployment", kinds={"kubernetes"}, code_version="1")
def kubernetes_deployment(
    context: dg.AssetExecutionContext,
    model_image: Image,
    prediction_bento: Bento,
    holdout_data: pd.DataFrame,
    registry: ModelRegistry,
    project: ProjectSpecResource,
    kubernetes: KubernetesServing,
) -> dg.Output[dict]:
    """The champion's image rolled out as a Kubernetes Deployment behind a Service, checked with a held-out row
    through the Service, and rolled back to the previous version when it is not ready in time, answers wrong
    or fails requests in its first seconds: then this asset fails, naming why, and the old version serves."""
    spec = project.load()
    target = kubernetes.target()
    release = ModelDeployment(
        spec.name, model_image.digest, prediction_bento.model_tag, spec.deployment, namespace=target.namespace
    )
    example = example_row(prediction_bento, holdout_data, registry)
    check = prediction_check(example, prediction_bento.model_tag)
    outcome = target.deploy(release, check=check)
    metadata = outcome_metadata(outcome, example)  # raises, naming why, when the new version was rolled back
    serving = outcome.serving
    context.log.info(
        f"{serving.namespace}/{serving.name} serves {serving.model_tag} at revision {serving.revision} "
        f"({serving.ready_replicas} ready)" + (f", replacing {outcome.previous.model_tag}" if outcome.previous else "")
    )
    return dg.Output(
        {k: metadata[k] for k in ("namespace", "deployment", "model_tag", "image_digest", "revision")},
        metadata=metadata,
    )


def outcome_metadata(outcome: "Outcome", example: dict) -> dict:
    """What a rollout leaves in the asset's metadata; when it was rolled back, a ``dg.Failure`` naming the
    reason, with what still serves and what failed in its metadata."""
    serving = outcome.serving
    metadata = {
        "namespace": serving.namespace,
        "deployment": serving.name,
        "url": serving.url,
        "model_tag": serving.model_tag,
        "image_digest": serving.image,
        "revision": serving.revision,
        "replicas_ready": serving.ready_replicas,
        "replaced": outcome.previous.model_tag if outcome.previous else "",
        "rollout_seconds": round(outcome.rollout_seconds, 1),
        "checked_requests": outcome.watched_requests,
        "failed_requests": outcome.failed_requests,
        "example_row": json.dumps(example),
    }
    if not outcome.rolled_back:
        return metadata
    raise dg.Failure(
        description=f"{outcome.attempted_model_tag} was rolled back on Kubernetes (revision "
        f"{outcome.failed_revision}), {serving.model_tag} still serves at revision {serving.revision}: "
        f"{outcome.reason}",
        metadata={
            **metadata,
            "rollback_reason": outcome.reason,
            "failed_model_tag": outcome.attempted_model_tag,
            "failed_image_digest": outcome.attempted_image,
            "failed_revision": outcome.failed_revision or 0,
            "rollback_seconds": round(outcome.rollback_seconds or 0.0, 1),
        },
    )
