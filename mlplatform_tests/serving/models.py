"""A small real model for the serving tests and benchmark: the bundled penguins, cleaned and split as the
pipeline does, the linear candidate tuned for one trial and shipped behind its feature pipeline
(``mlplatform_tests.models.fitted``), saved through the registry. Built here rather than by a Dagster run,
so that a serving test takes seconds: serving needs a registry version with a real pipeline and schema."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlplatform.lib.data.cleaning import clean
from mlplatform.lib.features import features
from mlplatform.lib.monitoring.reference import reference_sample
from mlplatform.lib.registry import registry
from mlplatform.lib.spec import default_spec_path, load_spec
from mlplatform.lib.training.training import TrainedModel
from mlplatform.resources.model_store import BentoMLStore
from mlplatform_tests.models import fitted


@dataclass(frozen=True)
class SavedModel:
    tag: str
    model: TrainedModel
    schema: dict
    holdout: pd.DataFrame  # raw input columns (and the target), as the pipeline takes them

    @property
    def project(self) -> str:
        return self.tag.split(":")[0]

    @property
    def inputs(self) -> pd.DataFrame:
        return self.holdout[[column["name"] for column in self.schema["columns"]]]


def save_penguins_model(bentoml_home: Path, project: str = "penguins") -> SavedModel:
    """Train on the bundled penguins and store the model as a new registry version of ``project`` under
    ``bentoml_home`` (this process's BentoML home)."""
    spec = load_spec(default_spec_path()).model_copy(update={"name": project})
    cleaned, _ = clean(pd.read_csv(default_spec_path().parent / "penguins.csv"), spec)
    training, holdout, _ = features.split(cleaned, spec)
    model = fitted(training, spec)
    schema = features.input_schema(model.pipeline[0], training, spec, model.classes)
    metrics = {"f1_macro": 1.0}
    labels = registry.lineage_labels(spec=spec, data_version="test", run_id="test", metrics=metrics, model=model)
    store = registry.Registry(BentoMLStore(bentoml_home), str(bentoml_home.parent / "artifacts"), spec.name)
    version = store.save(
        model,
        schema=schema,
        labels=labels,
        metrics=metrics,
        training_rows=features.RowIds.of(training, spec),
        reference=reference_sample(model, training, schema),
    )
    return SavedModel(version.tag, model, schema, holdout)
