"""What a prediction service answers with, without BentoML: the typed request and response models built from
a model's input schema, and the predictor over the stored pipeline. (Micro-batching is in
``mlplatform.lib.serving.batching``, the token check in ``mlplatform.lib.serving.auth``.)

The service in ``bentos/predictor`` and the bare FastAPI baseline in ``bench/serving.py`` both use these, so a
prediction goes through exactly the feature pipeline training fitted (no training/serving skew), and the
benchmark compares serving stacks, not two ways of calling the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from mlplatform.lib.registry.registry import REFERENCE_FILE, SCHEMA_FILE, check_pinned, read_version
from mlplatform.lib.training.training import TrainedModel

# Up to this many categories a column is an enum (listed in the OpenAPI docs and in the error message);
# beyond it, a set lookup whose error names a few of the known values.
MAX_ENUM_CATEGORIES = 100
# Rows one batch request may hold: larger bodies are refused (400) rather than held in memory at once.
MAX_REQUEST_ROWS = 10_000


# A number further than this many training spans beyond its column's training range is refused (422): the model
# never saw anything like it, and its answer would be an extrapolation the client cannot tell from a prediction.
# Values nearer are answered (the drift monitor watches the prediction log for a shift of the inputs).
FAR_OUTSIDE_SPANS = 10.0


class ServingError(RuntimeError):
    """The service cannot start or answer as configured; the message names the setting or the model."""


def request_model(schema: dict) -> type[BaseModel]:
    """One row of model input, typed from the schema training wrote: numbers are numbers (no strings, no
    booleans, no NaN), categories are one of the values training saw, every column must be present and may be
    null (the feature pipeline imputes it), and unknown fields are refused. Fields carry the column names as
    aliases, so a validation error names the column, whatever characters its name holds.

    The schema's ``id_column`` (the spec's), when it has one, is an optional field of text or an integer: it
    is logged with the prediction, so that labels can be joined to it, and never reaches the model."""
    fields: dict[str, Any] = {}
    for index, column in enumerate(schema["columns"]):
        name = column["name"]
        fields[f"column_{index}"] = (
            _annotation(column) | None,
            Field(alias=name, title=name, description=_describe(column)),
        )
    id_column = schema.get("id_column")
    if id_column:
        fields["row_id"] = (
            str | int | None,
            Field(
                default=None,
                alias=id_column,
                title=id_column,
                description="optional: this row's id, logged with the prediction to join labels to; not a model input",
            ),
        )
    return create_model(
        f"{_title(schema['project'])}Row",
        __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False),
        **fields,
    )


def _annotation(column: dict) -> Any:
    if column["kind"] == "number":
        return int if column["type"] == "integer" else float
    if column["type"] == "bool":
        return bool
    categories = tuple(column["categories"])
    if len(categories) <= MAX_ENUM_CATEGORIES:
        return Literal[categories]
    return Annotated[str, AfterValidator(_member_of(frozenset(categories), column["name"]))]


def _member_of(known: frozenset[str], name: str) -> Callable[[str], str]:
    examples = ", ".join(repr(value) for value in sorted(known)[:5])

    def check(value: str) -> str:
        if value not in known:
            raise ValueError(
                f"{value!r} is not a category the model knows for {name} ({len(known)} known: {examples}, ...)"
            )
        return value

    return check


def _describe(column: dict) -> str:
    if column["kind"] == "number":
        return f"{column['type']}; null when unknown"
    return f"category ({len(column['categories'])} known values); null when unknown"


def _title(project: str) -> str:
    return "".join(part.capitalize() for part in project.replace("-", "_").split("_")) or "Model"


class RowPrediction(TypedDict):
    """One row's answer. A TypedDict, not a model: answers are plain dicts, which pydantic validates and
    serializes in Rust (a BaseModel instance per row costs ~30 us to build, even without validation)."""

    prediction: Annotated[str | float, Field(description="the predicted class, or the value for regression")]
    probabilities: Annotated[
        dict[str, float] | None, Field(description="each class's probability, for classifiers that estimate them")
    ]


REQUEST_ID_DESCRIPTION = (
    "this request's id, also in the prediction log: labels for its rows are joined to it "
    "(with request_row, the row's position, for a batch)"
)


class Prediction(BaseModel):
    model_tag: str = Field(description="the model version that answered, <project>:<version>")
    request_id: str = Field(description=REQUEST_ID_DESCRIPTION)
    prediction: str | float = Field(description="the predicted class, or the predicted value for regression")
    probabilities: dict[str, float] | None = Field(
        default=None, description="each class's probability, for classifiers that estimate them"
    )


class BatchPrediction(BaseModel):
    model_tag: str = Field(description="the model version that answered, <project>:<version>")
    request_id: str = Field(description=REQUEST_ID_DESCRIPTION)
    predictions: list[RowPrediction] = Field(description="one per input row, in the same order")


class ModelRunner:
    """The shipped pipeline behind rows given as mappings of column name to value.

    The feature steps run once per call and the estimator's ``predict`` gives the answer, which is what
    ``Pipeline.predict`` computes; the class probabilities come from the same transformed features."""

    def __init__(self, model: TrainedModel, schema: dict, tag: str) -> None:
        self.model, self.schema, self.tag = model, schema, tag
        self.columns = [(column["name"], _dtype(column)) for column in schema["columns"]]
        self.column_names = [name for name, _ in self.columns]
        self.classification = schema["task"] == "classification"
        self._features = model.pipeline[:-1]
        self._estimator = model.pipeline[-1]
        expected = set(getattr(self._features, "feature_names_in_", ()))
        if expected and expected != {name for name, _ in self.columns}:
            raise ServingError(f"model {tag}: schema.json columns differ from the pipeline's inputs {sorted(expected)}")

    def frame(self, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """The rows as the DataFrame the pipeline was fitted on: one typed column per schema column, None as
        missing, built column by column (not from records, which makes pandas infer every column's type)."""
        return pd.DataFrame(
            {name: np.array([row[name] for row in rows], dtype=dtype) for name, dtype in self.columns},
            columns=self.column_names,
        )

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[RowPrediction]:
        if not rows:
            return []
        features = self._features.transform(self.frame(rows))
        labels = self._estimator.predict(features)
        if not self.classification:
            return [{"prediction": float(value), "probabilities": None} for value in labels.tolist()]
        if not hasattr(self._estimator, "predict_proba"):
            return [{"prediction": str(value), "probabilities": None} for value in labels.tolist()]
        classes = [str(value) for value in self._estimator.classes_]
        probabilities = self._estimator.predict_proba(features).tolist()
        return [
            {"prediction": str(label), "probabilities": dict(zip(classes, row, strict=True))}
            for label, row in zip(labels.tolist(), probabilities, strict=True)
        ]


def _dtype(column: dict) -> type:
    # numbers as float64 whatever their declared type, so that null becomes NaN, the imputers' missing value
    return float if column["kind"] == "number" else object


class InputRanges:
    """The training range of each numeric input (from the reference sample stored with the model version), and
    the rows of a request that a model cannot honestly answer: a number more than ``FAR_OUTSIDE_SPANS`` training
    spans beyond its column's range. The span of a constant column is its value's size (at least 1)."""

    def __init__(self, bounds: Mapping[str, tuple[float, float]]) -> None:
        self.bounds = dict(bounds)

    @classmethod
    def of(cls, reference: pd.DataFrame | None, schema: dict, spans: float = FAR_OUTSIDE_SPANS) -> InputRanges:
        bounds = {}
        for column in schema["columns"]:
            name = column["name"]
            if column["kind"] != "number" or reference is None or name not in reference.columns:
                continue
            values = pd.to_numeric(reference[name], errors="coerce").dropna()
            if values.empty:
                continue
            low, high = float(values.min()), float(values.max())
            span = (high - low) or max(abs(low), abs(high), 1.0)
            bounds[name] = (low - spans * span, high + spans * span)
        return cls(bounds)

    def far_outside(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
        """(row index, column) of every number far outside its training range."""
        found = []
        for index, row in enumerate(rows):
            for name, (low, high) in self.bounds.items():
                value = row[name]
                if value is not None and not low <= value <= high:
                    found.append((index, name))
        return found


def non_finite(answers: Sequence[RowPrediction]) -> list[int]:
    """Indexes of the answers with a prediction or a probability that is not a finite number (NaN, infinity):
    what a model gives for inputs at the edge of floating point, which must never reach a client as a label."""
    bad = []
    for index, answer in enumerate(answers):
        values = [answer["prediction"], *(answer["probabilities"] or {}).values()]
        if any(isinstance(value, float) and not math.isfinite(value) for value in values):
            bad.append(index)
    return bad


def read_reference(model_dir: str | Path) -> pd.DataFrame | None:
    """The reference sample stored with a model version, None for a version saved without one."""
    path = Path(model_dir) / REFERENCE_FILE
    return pd.read_parquet(path) if path.exists() else None


def pinned_tag(tag: str | None) -> str:
    """The model tag to serve, which must name a version: serving never follows ``:latest``."""
    if not tag:
        raise ServingError(
            "no model to serve: build the bento with --arg model_tag=<project>:<version> "
            "(or set MLPLATFORM_MODEL_TAG when serving the service from source)"
        )
    return check_pinned(tag, ServingError)


def request_rows(frame: pd.DataFrame, schema: dict) -> list[dict]:
    """Rows of a frame as a client sends them: the schema's columns, JSON types, missing values as None; and the
    schema's id column when the frame has it."""
    id_column = schema.get("id_column")
    carried = [id_column] if id_column and id_column in frame.columns else []
    rows = []
    for record in frame[[column["name"] for column in schema["columns"]] + carried].to_dict("records"):
        row = {name: _id_value(record[name]) for name in carried}
        for column in schema["columns"]:
            value = record[column["name"]]
            if pd.isna(value):
                row[column["name"]] = None
            elif column["kind"] == "number":
                row[column["name"]] = int(value) if column["type"] == "integer" else float(value)
            else:
                row[column["name"]] = bool(value) if column["type"] == "bool" else str(value)
        rows.append(row)
    return rows


def _id_value(value: Any) -> str | int | None:
    """An id as JSON sends it: an integer stays one (also when a column with gaps made it a float), else text."""
    if pd.isna(value):
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return str(value)


def read_schema(model_dir: str | Path) -> dict:
    """The input schema alone (the request model is built from it before the model is loaded)."""
    return json.loads((Path(model_dir) / SCHEMA_FILE).read_text())


def load_model(model_dir: str | Path, tag: str) -> ModelRunner:
    """The model runner for a registry model version, from its folder in a BentoML model store (the local store
    when serving from source, the bento's own inside a container)."""
    model, schema = read_version(model_dir)
    return ModelRunner(model, schema, tag)
