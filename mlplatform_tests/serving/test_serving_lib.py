"""mlplatform.lib.serving: request models from a schema, the model runner, micro-batching and the token check."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

from mlplatform.lib.features.features import fit_feature_pipeline, input_schema
from mlplatform.lib.serving import serving
from mlplatform.lib.serving.prediction_log import RequestIds
from mlplatform.lib.serving.serving import request_rows
from mlplatform.lib.training.training import TrainedModel
from mlplatform.settings import ServingSettings, SettingsError
from mlplatform_tests.serving.models import SavedModel

SCHEMA = {
    "project": "shop-orders",
    "task": "classification",
    "target": "returned",
    "classes": ["no", "yes"],
    "columns": [
        {"name": "price", "nullable": True, "kind": "number", "type": "float"},
        {"name": "items", "nullable": True, "kind": "number", "type": "integer"},
        {"name": "channel", "nullable": True, "kind": "category", "type": "string", "categories": ["shop", "web"]},
        {"name": "gift", "nullable": True, "kind": "category", "type": "bool", "categories": ["False", "True"]},
        {"name": "ship to", "nullable": True, "kind": "number", "type": "float"},
    ],
}
VALID = {"price": 9.5, "items": 2, "channel": "web", "gift": False, "ship to": 3.0}


def errors(model: type, payload: dict) -> list[dict]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(json.dumps(payload))
    return caught.value.errors()


class TestRequestModel:
    def test_a_valid_row_comes_back_under_the_column_names(self) -> None:
        row = serving.request_model(SCHEMA).model_validate_json(json.dumps(VALID))

        assert row.model_dump(by_alias=True) == VALID
        assert type(row).__name__ == "ShopOrdersRow"

    def test_every_column_may_be_null(self) -> None:
        row = serving.request_model(SCHEMA).model_validate_json(json.dumps(dict.fromkeys(VALID)))

        assert row.model_dump(by_alias=True) == dict.fromkeys(VALID)

    def test_an_integer_is_a_number(self) -> None:
        row = serving.request_model(SCHEMA).model_validate_json(json.dumps({**VALID, "price": 10}))

        assert row.model_dump(by_alias=True)["price"] == 10.0

    @pytest.mark.parametrize(
        ("change", "column", "kind"),
        [
            ({"price": "9.5"}, "price", "float_type"),
            ({"price": True}, "price", "float_type"),
            ({"items": 2.5}, "items", "int_type"),
            ({"channel": "phone"}, "channel", "literal_error"),
            ({"channel": 1}, "channel", "literal_error"),
            ({"gift": "yes"}, "gift", "bool_type"),
            ({"ship to": "far"}, "ship to", "float_type"),
            ({"coupon": "X"}, "coupon", "extra_forbidden"),
        ],
    )
    def test_a_wrong_value_is_refused_naming_its_column(self, change: dict, column: str, kind: str) -> None:
        (error,) = errors(serving.request_model(SCHEMA), {**VALID, **change})

        assert (error["loc"], error["type"]) == ((column,), kind)

    def test_a_missing_column_is_refused_by_name(self) -> None:
        (error,) = errors(serving.request_model(SCHEMA), {k: v for k, v in VALID.items() if k != "items"})

        assert (error["loc"], error["type"]) == (("items",), "missing")

    def test_not_a_number_is_refused(self) -> None:
        model = serving.request_model(SCHEMA)
        with pytest.raises(ValidationError, match="finite number"):
            model.model_validate({**VALID, "price": float("nan")})

    def test_an_unknown_category_lists_the_known_ones(self) -> None:
        (error,) = errors(serving.request_model(SCHEMA), {**VALID, "channel": "phone"})

        assert error["msg"] == "Input should be 'shop' or 'web'"

    def test_a_large_category_set_is_checked_without_an_enum(self) -> None:
        many = [f"store-{i:04d}" for i in range(serving.MAX_ENUM_CATEGORIES + 1)]
        schema = {**SCHEMA, "columns": [{**SCHEMA["columns"][2], "categories": many}]}
        model = serving.request_model(schema)

        assert model.model_validate({"channel": "store-0042"}).model_dump(by_alias=True) == {"channel": "store-0042"}
        (error,) = errors(model, {"channel": "store-9999"})
        assert error["loc"] == ("channel",)
        assert "'store-9999' is not a category the model knows for channel (101 known: 'store-0000'" in error["msg"]
        assert "enum" not in json.dumps(model.model_json_schema())


class TestIdColumn:
    """The spec's id column travels with a request, so that labels can be joined to its logged prediction."""

    SCHEMA = {**SCHEMA, "id_column": "order id"}

    @pytest.mark.parametrize("value", ["A-17", 17, None])
    def test_a_request_may_carry_it_as_text_or_integer(self, value: object) -> None:
        row = serving.request_model(self.SCHEMA).model_validate_json(json.dumps({**VALID, "order id": value}))

        assert row.model_dump(by_alias=True) == {**VALID, "order id": value}

    def test_it_is_optional(self) -> None:
        model = serving.request_model(self.SCHEMA)

        assert model.model_validate_json(json.dumps(VALID)).model_dump(by_alias=True)["order id"] is None
        assert "order id" not in model.model_json_schema()["required"]

    @pytest.mark.parametrize("value", [True, 1.5, ["A"]])
    def test_another_type_is_refused_naming_it(self, value: object) -> None:
        found = errors(serving.request_model(self.SCHEMA), {**VALID, "order id": value})

        assert {error["loc"][0] for error in found} == {"order id"}

    def test_without_one_in_the_schema_it_is_an_unknown_field(self) -> None:
        (error,) = errors(serving.request_model(SCHEMA), {**VALID, "order id": "A-17"})

        assert (error["loc"], error["type"]) == (("order id",), "extra_forbidden")

    def test_request_rows_carry_it_as_json_sends_it(self) -> None:
        frame = pd.DataFrame([{**VALID, "order id": 17.0}, {**VALID, "order id": None}, {**VALID, "order id": "X"}])

        rows = request_rows(frame, self.SCHEMA)

        assert [row["order id"] for row in rows] == [17, None, "X"]
        assert all(set(row) == {*VALID, "order id"} for row in rows)

    def test_it_never_reaches_the_model(self, penguins_model: SavedModel) -> None:
        schema = {**penguins_model.schema, "id_column": "penguin"}
        runner = serving.ModelRunner(penguins_model.model, schema, penguins_model.tag)
        (row,) = request_rows(penguins_model.holdout.head(1), penguins_model.schema)

        with_id = runner.predict_rows([{**row, "penguin": "P-1"}])

        assert with_id == runner.predict_rows([row])
        assert "penguin" not in runner.frame([{**row, "penguin": "P-1"}]).columns


def test_request_ids_are_unique_within_and_across_processes() -> None:
    first, second = RequestIds(), RequestIds()  # a process each: their prefixes are drawn apart

    ids = [first.next() for _ in range(1000)] + [second.next() for _ in range(1000)]

    assert len(set(ids)) == 2000
    assert first.prefix != second.prefix
    assert all(i.startswith(first.prefix + "-") for i in ids[:1000])


def test_a_request_id_prefix_that_reads_as_a_number_is_drawn_again() -> None:
    drawn = iter(["17851957467e", "123456789012", "0000e0000000", "3f9c2a7b1d4e"])

    ids = RequestIds(draw=lambda size: next(drawn))

    assert ids.prefix == "3f9c2a7b1d4e"
    assert ids.next() == "3f9c2a7b1d4e-1"


class TestModelRunner:
    def test_predictions_equal_the_pipeline_s(self, penguins_model: SavedModel) -> None:
        runner = serving.ModelRunner(penguins_model.model, penguins_model.schema, penguins_model.tag)
        rows = request_rows(penguins_model.holdout, penguins_model.schema)

        answers = runner.predict_rows(rows)

        pipeline = penguins_model.model.pipeline
        assert [a["prediction"] for a in answers] == pipeline.predict(penguins_model.inputs).tolist()
        expected = pipeline.predict_proba(penguins_model.inputs)
        got = [[a["probabilities"][c] for c in penguins_model.model.classes] for a in answers]
        np.testing.assert_allclose(got, expected, rtol=1e-12)

    def test_missing_values_are_imputed_as_in_training(self, penguins_model: SavedModel) -> None:
        runner = serving.ModelRunner(penguins_model.model, penguins_model.schema, penguins_model.tag)
        empty = dict.fromkeys(runner.column_names)

        (answer,) = runner.predict_rows([empty])

        expected = penguins_model.model.pipeline.predict(pd.DataFrame([empty]).astype(runner.frame([empty]).dtypes))
        assert answer["prediction"] == expected[0]
        assert sum(answer["probabilities"].values()) == pytest.approx(1.0)

    def test_the_frame_has_the_training_columns_and_types(self, penguins_model: SavedModel) -> None:
        runner = serving.ModelRunner(penguins_model.model, penguins_model.schema, penguins_model.tag)

        frame = runner.frame([{**dict.fromkeys(runner.column_names), "island": "Dream", "body_mass_g": 4000}])

        assert list(frame.columns) == list(penguins_model.model.pipeline.feature_names_in_)
        assert frame["body_mass_g"].dtype == np.float64 and frame["bill_depth_mm"].isna().all()
        assert frame["island"].tolist() == ["Dream"] and frame["sex"].tolist() == [None]

    def test_no_rows_no_model_call(self, penguins_model: SavedModel) -> None:
        assert (
            serving.ModelRunner(penguins_model.model, penguins_model.schema, penguins_model.tag).predict_rows([]) == []
        )

    def test_a_regressor_answers_numbers_without_probabilities(self, spec_from) -> None:
        spec = spec_from(problem={"task": "regression", "target": "price"})
        training = pd.DataFrame({"price": np.arange(30.0) * 3 + 2, "x": np.arange(30.0), "shop": ["a", "b", "c"] * 10})
        features = fit_feature_pipeline(training, spec)
        estimator = Ridge(alpha=1e-6).fit(features.transform(training[["x", "shop"]]), training["price"])
        model = TrainedModel(Pipeline([("features", features), ("estimator", estimator)]), "Ridge", {}, 30, 0.0)

        answers = serving.ModelRunner(model, input_schema(features, training, spec), "p:1").predict_rows(
            [{"x": 10.0, "shop": "a"}, {"x": None, "shop": None}]
        )

        assert answers[0]["prediction"] == pytest.approx(32.0, abs=0.01)
        assert isinstance(answers[1]["prediction"], float) and answers[0]["probabilities"] is None

    def test_a_schema_that_does_not_match_the_pipeline_is_refused(self, penguins_model: SavedModel) -> None:
        schema = {**penguins_model.schema, "columns": penguins_model.schema["columns"][:-1]}

        with pytest.raises(serving.ServingError, match="schema.json columns differ"):
            serving.ModelRunner(penguins_model.model, schema, penguins_model.tag)


@pytest.mark.parametrize("tag", [None, "", "penguins", "penguins:latest"])
def test_serving_needs_a_pinned_version(tag: str | None) -> None:
    with pytest.raises(serving.ServingError, match="model_tag|never 'latest'"):
        serving.pinned_tag(tag)


class TestServingSettings:
    def test_defaults(self, tmp_path) -> None:
        settings = ServingSettings.from_env({"MLPLATFORM_HOME": str(tmp_path), "MLPLATFORM_API_TOKEN": "t"})

        assert (settings.auth, settings.api_token, settings.model_tag) == ("token", "t", None)
        assert settings.prediction_log == tmp_path / "predictions"
        assert settings.require_token() == "t"

    def test_no_token_is_refused_unless_auth_is_switched_off(self) -> None:
        with pytest.raises(SettingsError, match="MLPLATFORM_API_TOKEN is not set.*MLPLATFORM_AUTH=off"):
            ServingSettings.from_env({}).require_token()
        assert ServingSettings.from_env({"MLPLATFORM_AUTH": "off"}).require_token() is None

    def test_queue_body_and_header_limits_come_from_the_environment(self) -> None:
        settings = ServingSettings.from_env(
            {"MLPLATFORM_MAX_QUEUED_ROWS": "7", "MLPLATFORM_BODY_SECONDS": "2.5", "MLPLATFORM_HEADER_SECONDS": "4"}
        )

        assert (settings.max_queued_rows, settings.body_seconds, settings.header_seconds) == (7, 2.5, 4.0)
        assert ServingSettings.from_env({}).header_seconds == 10.0
        for name, value in [
            ("MLPLATFORM_MAX_QUEUED_ROWS", "0"),
            ("MLPLATFORM_BODY_SECONDS", "nan"),
            ("MLPLATFORM_HEADER_SECONDS", "-1"),
        ]:
            with pytest.raises(SettingsError, match=f"{name}='{value}': use a positive"):
                ServingSettings.from_env({name: value})

    def test_an_unknown_auth_mode_is_refused(self) -> None:
        with pytest.raises(SettingsError, match="MLPLATFORM_AUTH='none'"):
            ServingSettings.from_env({"MLPLATFORM_AUTH": "none"})


class TestInputRanges:
    SCHEMA = {
        "columns": [
            {"name": "mass g", "kind": "number", "type": "float"},
            {"name": "count", "kind": "number", "type": "integer"},
            {"name": "kind", "kind": "category", "type": "str", "categories": ["a"]},
        ]
    }

    def test_a_number_beyond_ten_training_spans_is_named(self) -> None:
        reference = pd.DataFrame({"mass g": [10.0, 20.0], "count": [3, 3], "kind": ["a", "a"]})
        ranges = serving.InputRanges.of(reference, self.SCHEMA)
        rows = [
            {"mass g": 120.0, "count": 33, "kind": "a"},  # both at the edge: 10 spans (a constant's span is its size)
            {"mass g": 120.1, "count": None, "kind": "a"},
            {"mass g": -1.7e308, "count": -28, "kind": "a"},
        ]

        assert ranges.far_outside(rows) == [(1, "mass g"), (2, "mass g"), (2, "count")]

    def test_without_a_reference_nothing_is_refused(self) -> None:
        assert serving.InputRanges.of(None, self.SCHEMA).far_outside([{"mass g": 1e308, "count": 1}]) == []


def test_non_finite_answers_are_found() -> None:
    answers = [
        {"prediction": "a", "probabilities": {"a": 1.0, "b": 0.0}},
        {"prediction": "a", "probabilities": {"a": float("nan"), "b": 0.0}},
        {"prediction": float("inf"), "probabilities": None},
        {"prediction": 2.5, "probabilities": None},
    ]

    assert serving.non_finite(answers) == [1, 2]
