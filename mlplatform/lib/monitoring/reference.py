"""What a model version learned from, kept beside it for the drift monitor: a seeded sample of its training
inputs and the model's own predictions on them, in the columns and types the prediction log holds.

Drift is then measured against what *that* version was trained on, not against whatever the training data
has become since; a bounded sample (5,000 rows) keeps the stored version small and the comparison fast
(the statistics' power is set by the smaller sample: at 5,000 reference rows a KS distance of about 0.02
is already significant, well below any threshold that matters)."""

from __future__ import annotations

import pandas as pd

from mlplatform.lib.training.training import TrainedModel

REFERENCE_ROWS = 5_000
REFERENCE_SEED = 0
PREDICTION = "prediction"  # the prediction log's column for the model's answer


class ReferenceError(ValueError):
    """A reference sample cannot be made from this data; the message names the column."""


def input_columns(schema: dict) -> list[str]:
    return [column["name"] for column in schema["columns"]]


def reference_sample(
    model: TrainedModel, training: pd.DataFrame, schema: dict, rows: int = REFERENCE_ROWS, seed: int = REFERENCE_SEED
) -> pd.DataFrame:
    """Up to ``rows`` training rows drawn with ``seed`` (every row when there are fewer), their input columns
    as the schema names them, and ``prediction``: the model's answer for each (the class for a classifier,
    the value for a regressor)."""
    columns = input_columns(schema)
    missing = [column for column in columns if column not in training.columns]
    if missing:
        raise ReferenceError(f"reference sample: input column(s) {missing} are not in the training data")
    if PREDICTION in columns:
        raise ReferenceError(f"reference sample: an input column is named {PREDICTION!r}, the prediction's column")
    chosen = training if len(training) <= rows else training.sample(n=rows, random_state=seed).sort_index()
    sample = chosen[columns].reset_index(drop=True)
    predicted = model.pipeline.predict(chosen[columns])
    classifier = schema["task"] == "classification"
    sample[PREDICTION] = [str(value) for value in predicted] if classifier else predicted.astype(float)
    return sample
