"""The rule builders (contract, profile, batch, user), profile learning, the ``warn`` severity and a misspelt
expectation: the suites a batch is held to, built from small frames and specs, mostly without running GX."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlplatform.lib.quality import builders, gx_suites, profiling
from mlplatform.lib.quality.builders import BOOLEAN_TYPES, NUMERIC_TYPES, QualityError, Rule

PENGUIN_COLUMNS = ["species", "island", "bill_length_mm", "sex", "year"]


def rules_by(rules: list[Rule], expectation: str) -> dict[str | None, Rule]:
    return {rule.column: rule for rule in rules if rule.expectation == expectation}


class TestContractRules:
    def test_the_target_id_and_time_columns_and_required_contract_columns_must_exist(self, spec_from) -> None:
        spec = spec_from(
            problem={"task": "classification", "target": "species", "id_column": "id", "time_column": "seen_at"},
            quality={"columns": {"island": {}, "sex": {"required": False}}},
        )

        rules = builders.contract_rules(spec, PENGUIN_COLUMNS)

        exists = [rule.column for rule in rules if rule.expectation == "expect_column_to_exist"]
        assert exists == ["species", "id", "seen_at", "island"]  # a column that need not be there is not asked for
        assert {rule.origin for rule in rules} == {"spec"}

    @pytest.mark.parametrize(
        ("contract", "expectation", "arguments"),
        [
            ({"type": "number"}, "expect_column_values_to_be_in_type_list", {"type_list": list(NUMERIC_TYPES)}),
            ({"type": "boolean"}, "expect_column_values_to_be_in_type_list", {"type_list": list(BOOLEAN_TYPES)}),
            ({"min": 30}, "expect_column_values_to_be_between", {"min_value": 30, "max_value": None}),
            ({"min": 30, "max": 60, "mostly": 0.95}, "expect_column_values_to_be_between",
             {"min_value": 30, "max_value": 60, "mostly": 0.95}),
            ({"allowed": ["MALE", "FEMALE"]}, "expect_column_values_to_be_in_set", {"value_set": ["MALE", "FEMALE"]}),
            ({"max_null_fraction": 0.1}, "expect_column_values_to_not_be_null", {"mostly": 0.9}),
        ],
    )  # fmt: skip
    def test_each_promise_of_a_column_is_one_rule_with_its_severity(
        self, spec_from, contract: dict, expectation: str, arguments: dict
    ) -> None:
        spec = spec_from(quality={"columns": {"bill_length_mm": {**contract, "severity": "warn"}}})

        [rule] = [r for r in builders.contract_rules(spec, PENGUIN_COLUMNS) if r.column == "bill_length_mm" and
                  r.expectation != "expect_column_to_exist"]  # fmt: skip

        assert rule.expectation == expectation
        assert rule.kwargs == {"column": "bill_length_mm", **arguments}
        assert rule.severity == "warn"

    def test_a_contract_on_a_column_the_batch_lacks_only_asks_for_the_column(self, spec_from) -> None:
        spec = spec_from(quality={"columns": {"flipper_length_mm": {"type": "number", "min": 100}}})

        rules = [r for r in builders.contract_rules(spec, PENGUIN_COLUMNS) if r.column == "flipper_length_mm"]

        assert [r.expectation for r in rules] == ["expect_column_to_exist"]

    @pytest.mark.parametrize(("fraction", "mostly"), [(0.5, 0.5), (0.0, 1.0), (1.0, None)])
    def test_duplicate_rows_are_limited_unless_any_share_is_allowed(self, spec_from, fraction, mostly) -> None:
        spec = spec_from(quality={"max_duplicate_fraction": fraction, "duplicates_severity": "warn"})

        unique = rules_by(builders.contract_rules(spec, PENGUIN_COLUMNS), "expect_compound_columns_to_be_unique")

        if mostly is None:
            assert unique == {}
        else:
            assert unique[None].kwargs == {"column_list": PENGUIN_COLUMNS, "mostly": mostly}
            assert unique[None].severity == "warn"

    def test_max_unlabeled_fraction_limits_the_targets_nulls_with_a_note(self, spec_from) -> None:
        spec = spec_from(quality={"max_unlabeled_fraction": 0.25})

        rule = rules_by(builders.contract_rules(spec, PENGUIN_COLUMNS), "expect_column_values_to_not_be_null")[
            "species"
        ]

        assert rule.kwargs == {"column": "species", "mostly": 0.75}
        assert rule.origin == "spec quality.max_unlabeled_fraction" and "unlabeled rows" in rule.note


class TestLearnProfile:
    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "depth": [61.5, 59.8, np.nan, 63.0],
                "cut": ["Ideal", "Good", "Ideal", None],
                "certified": [True, False, True, True],
                "seen_at": pd.to_datetime(["2024-01-01", "2024-01-02", None, "2024-01-04"]),
                "year": [2007, 2008, 2009, 2009],
            }
        )

    def test_each_column_gets_its_kind_range_values_and_null_fraction(self, spec_from) -> None:
        spec = spec_from(problem={"task": "regression", "target": "depth", "drop_columns": ["year"]})

        profile = profiling.learn_profile(self.frame(), spec)

        assert profile == {
            "rows": 4,
            "columns": {
                "depth": {"null_fraction": 0.25, "kind": "numeric", "min": 59.8, "max": 63.0},
                "cut": {"null_fraction": 0.25, "kind": "category", "values": ["Good", "Ideal"]},
                "certified": {"null_fraction": 0.0, "kind": "boolean"},  # a bool is not a number to range
                "seen_at": {"null_fraction": 0.25, "kind": "datetime"},
            },
        }  # "year" is dropped by the spec, so nothing is learned of it

    def test_a_text_column_with_more_values_than_max_categories_gets_no_value_set(self, spec_from) -> None:
        frame = pd.DataFrame({"name": [f"penguin {i}" for i in range(6)], "y": range(6)})

        few = profiling.learn_profile(frame, spec_from(problem={"task": "regression", "target": "y"}))
        many = profiling.learn_profile(
            frame, spec_from(problem={"task": "regression", "target": "y"}, quality={"profile": {"max_categories": 5}})
        )

        assert len(few["columns"]["name"]["values"]) == 6
        assert many["columns"]["name"] == {"null_fraction": 0.0, "kind": "category"}

    def test_a_column_without_values_has_kind_and_null_fraction_only(self, spec_from) -> None:
        frame = pd.DataFrame({"empty": [np.nan, np.nan], "y": [1.0, 2.0]})

        profile = profiling.learn_profile(frame, spec_from(problem={"task": "regression", "target": "y"}))

        assert profile["columns"]["empty"] == {"null_fraction": 1.0, "kind": "numeric"}


class TestProfileRules:
    PROFILE = {
        "rows": 100,
        "columns": {
            "depth": {"null_fraction": 0.1, "kind": "numeric", "min": 50.0, "max": 70.0},
            "cut": {"null_fraction": 0.0, "kind": "category", "values": ["Good", "Ideal"]},
            "price": {"null_fraction": 0.2, "kind": "numeric", "min": 300.0, "max": 19000.0},
            "gone": {"null_fraction": 1.0, "kind": "numeric"},
            "year": {"null_fraction": 0.0, "kind": "numeric", "min": 2007.0, "max": 2009.0},
        },
    }

    def spec(self, spec_from, **profile):
        return spec_from(
            problem={"task": "regression", "target": "price", "drop_columns": ["year"]},
            quality={"profile": profile},
        )

    def test_ranges_widen_by_the_margin_and_value_sets_keep_the_tolerance(self, spec_from) -> None:
        rules = builders.profile_rules(self.PROFILE, self.spec(spec_from), ["depth", "cut", "price"], rows=100)

        between = rules_by(rules, "expect_column_values_to_be_between")
        assert between["depth"].kwargs == {"column": "depth", "min_value": 48.0, "max_value": 72.0, "mostly": 0.99}
        in_set = rules_by(rules, "expect_column_values_to_be_in_set")
        assert in_set["cut"].kwargs == {"column": "cut", "value_set": ["Good", "Ideal"], "mostly": 0.99}
        assert {rule.origin for rule in rules} == {"profile"} and {rule.severity for rule in rules} == {"error"}
        assert "year" not in {rule.column for rule in rules}  # dropped by the spec

    def test_null_fractions_allow_the_margin_and_chance_but_not_for_the_target(self, spec_from) -> None:
        rules = builders.profile_rules(self.PROFILE, self.spec(spec_from), ["depth", "cut", "price", "gone"], rows=100)

        nulls = rules_by(rules, "expect_column_values_to_not_be_null")
        chance = 3 * math.sqrt(0.1 * 0.9 / 100)
        assert nulls["depth"].kwargs["mostly"] == pytest.approx(1 - (0.1 + 0.05 + chance))
        assert nulls["cut"].kwargs["mostly"] == pytest.approx(0.95)  # never null: chance adds nothing
        assert "price" not in nulls  # the target's nulls are the contract's call (max_unlabeled_fraction)
        assert "gone" not in nulls  # always null so far: any share is allowed

    def test_a_column_the_batch_lacks_is_only_asked_for(self, spec_from) -> None:
        rules = builders.profile_rules(self.PROFILE, self.spec(spec_from), ["price"], rows=100)

        assert [(r.expectation, r.column) for r in rules if r.column == "depth"] == [
            ("expect_column_to_exist", "depth")
        ]

    def test_the_profiles_own_severity_and_a_strict_tolerance(self, spec_from) -> None:
        spec = self.spec(spec_from, severity="warn", mostly=1.0, range_margin=0.0)

        rules = builders.profile_rules(self.PROFILE, spec, ["depth"], rows=100)

        between = rules_by(rules, "expect_column_values_to_be_between")["depth"]
        assert between.kwargs == {"column": "depth", "min_value": 50.0, "max_value": 70.0}  # no mostly at 1.0
        assert {rule.severity for rule in rules} == {"warn"}


class TestBatchRules:
    PROFILE = {"rows": 10, "columns": {"depth": {"null_fraction": 0.0, "kind": "numeric", "min": 50.0, "max": 70.0}}}

    def test_the_spec_states_a_range_and_the_profiles_is_left_out(self, spec_from) -> None:
        spec = spec_from(
            problem={"task": "regression", "target": "price"},
            quality={"columns": {"depth": {"min": 0, "max": 100, "severity": "warn"}}},
        )

        rules = builders.batch_rules(spec, ["depth", "price"], self.PROFILE, 10)

        [between] = [rule for rule in rules if rule.expectation == "expect_column_values_to_be_between"]
        assert (between.origin, between.severity, between.kwargs["max_value"]) == ("spec", "warn", 100)

    def test_the_same_rule_from_the_spec_and_the_profile_is_kept_once_with_the_specs_severity(self, spec_from) -> None:
        spec = spec_from(
            problem={"task": "regression", "target": "price"},
            quality={"columns": {"depth": {}}, "profile": {"severity": "warn"}},
        )

        rules = builders.batch_rules(spec, ["depth", "price"], self.PROFILE, 10)

        [exists] = [r for r in rules if r.expectation == "expect_column_to_exist" and r.column == "depth"]
        assert exists.origin == "spec" and exists.severity == "error"  # the profile's would only warn
        assert len(rules) == len({(r.expectation, repr(sorted(r.kwargs.items()))) for r in rules})

    def test_with_the_profile_off_only_the_contract_the_schema_and_the_users_rules_remain(self, spec_from) -> None:
        spec = spec_from(
            problem={"task": "regression", "target": "price"},
            quality={
                "profile": {"enabled": False},
                "expectations": [{"expectation": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}],
            },
        )
        kinds = {"depth": ("numeric", "double"), "note": ("text", "large_string")}

        rules = builders.batch_rules(spec, ["depth", "price", "note"], self.PROFILE, 10, kinds)

        assert [(rule.expectation, rule.origin) for rule in rules] == [
            ("expect_column_values_to_be_in_type_list", "accepted data schema (double)"),
            ("expect_column_to_exist", "spec"),
            ("expect_compound_columns_to_be_unique", "spec"),
            ("expect_table_row_count_to_be_between", "spec quality.expectations[0]"),
        ]

    def test_user_rules_keep_their_order_severity_and_position_in_the_spec(self, spec_from) -> None:
        spec = spec_from(
            quality={
                "expectations": [
                    {"expectation": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 10}},
                    {"expectation": "expect_column_mean_to_be_between", "kwargs": {"column": "x"}, "severity": "warn"},
                ]
            }
        )

        rules = builders.user_rules(spec)

        assert [(r.expectation, r.severity, r.origin) for r in rules] == [
            ("expect_table_row_count_to_be_between", "error", "spec quality.expectations[0]"),
            ("expect_column_mean_to_be_between", "warn", "spec quality.expectations[1]"),
        ]


class TestSeverity:
    def rules(self, severity: str) -> list[Rule]:
        return [Rule("expect_column_values_to_be_between", {"column": "x", "max_value": 5}, severity, "test")]

    def test_a_failing_warn_rule_passes_the_report_with_a_warning(self) -> None:
        frame = pd.DataFrame({"x": [1.0, 2.0, 9.0]})

        report = gx_suites.validate(frame, self.rules("warn"), "warned")

        assert report.passed and report.errors == []
        [warning] = report.warnings
        assert warning.unexpected_count == 1
        assert report.lines() == [warning.describe()] and warning.describe().endswith("[warn, from test]")
        assert report.as_dict()["passed"] is True and len(report.as_dict()["failures"]) == 1

    def test_the_same_rule_as_an_error_fails_the_report(self) -> None:
        report = gx_suites.validate(pd.DataFrame({"x": [1.0, 2.0, 9.0]}), self.rules("error"), "blocked")

        assert not report.passed and report.warnings == [] and len(report.errors) == 1


class TestMisspeltExpectations:
    @pytest.mark.parametrize(
        ("expectation", "kwargs"),
        [
            ("expect_column_values_to_be_betwen", {"column": "bill_length_mm", "min_value": 30}),
            ("expect_table_row_count_to_be_between", {"min_value": "ten"}),
        ],
    )
    def test_check_expectations_names_the_expectation_and_its_place_in_the_spec(
        self, spec_from, expectation: str, kwargs: dict
    ) -> None:
        good = {"expectation": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}
        spec = spec_from(quality={"expectations": [good, {"expectation": expectation, "kwargs": kwargs}]})

        with pytest.raises(QualityError) as raised:
            gx_suites.check_expectations(spec)

        assert str(raised.value).startswith(f"spec quality.expectations[1]: {expectation} with {kwargs}: ")

    def test_validating_with_a_misspelt_expectation_fails_before_any_row_is_read(self) -> None:
        rule = Rule("expect_column_values_to_be_nul", {"column": "x"}, "error", "spec quality.expectations[0]")

        with pytest.raises(QualityError, match=r"^spec quality.expectations\[0\]: expect_column_values_to_be_nul "):
            gx_suites.validate(pd.DataFrame({"x": [1.0]}), [rule], "misspelt")

    def test_a_spec_with_known_expectations_counts_them(self, spec_from) -> None:
        spec = spec_from(
            quality={
                "expectations": [{"expectation": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}]
            }
        )

        assert gx_suites.check_expectations(spec) == 1
