"""Models already stored must still load: a version folder saved by the code before lib/ was split by domain
(mlplatform_tests/data/stored_model, see its README) is read and predicts what it predicted when saved."""

import json
from pathlib import Path

import pandas as pd

from mlplatform.lib.registry.registry import read_version

STORED = Path(__file__).resolve().parents[2] / "data" / "stored_model"


def test_a_model_stored_before_the_split_still_loads_and_predicts_the_same() -> None:
    model, schema = read_version(STORED)
    rows = pd.read_csv(STORED / "holdout.csv")

    predicted = [str(label) for label in model.pipeline.predict(rows)]

    assert predicted == json.loads((STORED / "predictions.json").read_text())
    assert model.classes == ("Adelie", "Chinstrap", "Gentoo")
    assert [column["name"] for column in schema["columns"]] == list(rows.columns)
