"""From the champion to something that answers requests: its bento, its container image, and a local server.
Each is downstream of champion_model, so a new champion (from the gate, or promoted or rolled back by hand)
rebuilds the bento and replaces what serves; a challenger that loses changes nothing here."""

import json
import urllib.request
from dataclasses import asdict, dataclass

import dagster as dg
import pandas as pd

from mlplatform.lib.registry.registry import Promotion
from mlplatform.lib.serving import serving
from mlplatform.resources import ImageRegistry, LocalServing, ModelRegistry, bentos
from mlplatform.resources.docker import Image
from mlplatform.resources.local_server import RunningServer


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


@dg.asset(group_name="deployment", kinds={"bentoml"}, code_version="1")
def local_deployment(
    context: dg.AssetExecutionContext,
    prediction_bento: Bento,
    holdout_data: pd.DataFrame,
    registry: ModelRegistry,
    local_serving: LocalServing,
) -> dg.Output[RunningServer]:
    """The champion's bento served on this machine by `bentoml serve`, replaced when the champion changes."""
    schema = registry.for_project(prediction_bento.model_tag.split(":")[0]).load(prediction_bento.model_tag).schema
    example = serving.request_rows(holdout_data.head(1), schema)[0]

    def answers_a_prediction(url: str, token: str) -> None:
        """A held-out row through /predict with the token: the server is up and serves this model."""
        request = urllib.request.Request(
            f"{url}/predict",
            data=json.dumps(example).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        if answer.get("model_tag") != prediction_bento.model_tag:
            raise bentos.BentoError(f"{url} answered for {answer.get('model_tag')}, not {prediction_bento.model_tag}")

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
