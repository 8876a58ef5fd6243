"""The reference sample each model version keeps: its training inputs and its predictions, in a real registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlplatform.lib.data import cleaning, synthetic
from mlplatform.lib.features import features
from mlplatform.lib.monitoring.reference import ReferenceError, reference_sample
from mlplatform.lib.registry import registry
from mlplatform.lib.registry.registry import Registry
from mlplatform.resources.model_store import BentoMLStore
from mlplatform_tests.conftest import BENTOML_HOME
from mlplatform_tests.models import fitted, save_version


@pytest.fixture
def models(tmp_path: Path) -> Registry:
    return Registry(BentoMLStore(BENTOML_HOME), str(tmp_path / "artifacts"), "penguins")


def trained(spec, frame: pd.DataFrame):
    training, _ = cleaning.clean(frame, spec)
    model = fitted(training, spec)
    schema = features.input_schema(model.pipeline.named_steps["features"], training, spec, model.classes)
    return model, schema, training


def test_a_bounded_seeded_sample_of_the_inputs_with_the_models_predictions(spec_from) -> None:
    spec = spec_from()
    model, schema, training = trained(spec, synthetic.penguins(7000, seed=1))

    sample = reference_sample(model, training, schema, rows=5000)

    inputs = [column["name"] for column in schema["columns"]]
    assert list(sample.columns) == [*inputs, "prediction"]
    assert len(sample) == 5000
    assert sample.equals(reference_sample(model, training, schema, rows=5000))  # seeded
    assert set(sample["prediction"]) <= set(model.classes)
    rows = training[inputs].merge(sample[inputs].drop_duplicates(), how="inner")
    assert len(rows) >= 5000  # every sampled row is a training row
    assert sample["prediction"].tolist() == [str(v) for v in model.pipeline.predict(sample[inputs])]


def test_a_regressor_keeps_numeric_predictions_and_a_small_training_set_whole(spec_from) -> None:
    spec = spec_from(problem={"task": "regression", "target": "body_mass_g"})
    model, schema, training = trained(spec, synthetic.penguins(300, seed=2))

    sample = reference_sample(model, training, schema)

    assert len(sample) == len(training)
    assert sample["prediction"].dtype == np.float64


def test_a_missing_input_column_is_named(spec_from) -> None:
    spec = spec_from()
    model, schema, training = trained(spec, synthetic.penguins(300, seed=2))

    with pytest.raises(ReferenceError, match=r"\['island'\] are not in the training data"):
        reference_sample(model, training.drop(columns="island"), schema)


def test_the_registry_keeps_it_with_the_version_and_an_older_version_has_none(
    spec_from, models: Registry, tmp_path: Path
) -> None:
    spec = spec_from()
    model, schema, training = trained(spec, synthetic.penguins(400, seed=3))

    version = save_version(models, spec, model, training)

    pd.testing.assert_frame_equal(models.reference(version.tag), reference_sample(model, training, schema))
    assert models.schema(version.tag) == schema
    folder = BENTOML_HOME / "models" / "penguins" / version.tag.split(":")[1]
    (folder / registry.REFERENCE_FILE).unlink()  # as a version stored before references were kept
    assert models.reference(version.tag) is None
