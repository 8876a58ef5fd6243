"""The suite a raw batch is held to, on data shaped like real datasets: unlabeled rows, a few legitimate
values outside a learned range, and a column whose type changed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlplatform.lib.quality import builders, gx_suites, profiling

NUMERIC_SCHEMA = {"carat": ("numeric", "double"), "table": ("numeric", "double"), "cut": ("text", "large_string")}


def survey(rows: int, unlabeled: float, seed: int = 0) -> pd.DataFrame:
    """Answers to a survey where a share of the respondents never gave the label."""
    generator = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": generator.integers(18, 90, rows).astype(float),
            "income": generator.lognormal(10, 0.5, rows),
            "region": generator.choice(["north", "south", "east", "west"], rows),
            "insured": generator.choice(["yes", "no"], rows).astype(object),
        }
    )
    frame.loc[: int(rows * unlabeled) - 1, "insured"] = None
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


def survey_spec(spec_from, **quality_sections):
    return spec_from(
        name="survey",
        problem={"task": "classification", "target": "insured"},
        quality=quality_sections,
    )


def diamonds(rows: int, seed: int = 0) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "carat": generator.uniform(0.2, 3.0, rows).round(2),
            "table": generator.uniform(50.0, 69.9, rows).round(1),
            "cut": generator.choice(["Fair", "Good", "Ideal"], rows),
            "price": generator.uniform(300, 19000, rows).round(),
        }
    )


def diamonds_spec(spec_from, **quality_sections):
    return spec_from(name="diamonds", problem={"task": "regression", "target": "price"}, quality=quality_sections)


def validate(spec, batch: pd.DataFrame, profile: dict | None = None, kinds: dict | None = None):
    rules = builders.batch_rules(spec, [str(c) for c in batch.columns], profile, len(batch), kinds)
    return gx_suites.validate(batch, rules, "raw_batch")


class TestUnlabeledRows:
    def test_a_survey_with_40_percent_unlabeled_rows_passes_the_contract_and_the_profile(self, spec_from) -> None:
        spec = survey_spec(spec_from)
        accepted = survey(1000, unlabeled=0.1)
        profile = profiling.learn_profile(accepted, spec)

        report = validate(spec, survey(1000, unlabeled=0.4, seed=1), profile)

        assert report.passed, report.lines()
        assert report.lines() == []

    def test_max_unlabeled_fraction_blocks_a_batch_above_it(self, spec_from) -> None:
        spec = survey_spec(spec_from, max_unlabeled_fraction=0.2)

        assert validate(spec, survey(1000, unlabeled=0.1)).passed
        report = validate(spec, survey(1000, unlabeled=0.4))

        [line] = report.lines()
        assert line.startswith("column 'insured': expect_column_values_to_not_be_null() failed: ")
        assert "400 of 1000 rows unexpected (40.00%), more than the 20% tolerated (mostly=0.8)" in line
        assert "unlabeled rows: the target 'insured' is missing" in line
        assert "[error, from spec quality.max_unlabeled_fraction]" in line

    def test_the_targets_max_null_fraction_in_the_contract_is_the_limit_with_its_own_severity(self, spec_from) -> None:
        spec = survey_spec(spec_from, columns={"insured": {"max_null_fraction": 0.2, "severity": "warn"}})

        report = validate(spec, survey(1000, unlabeled=0.4))

        assert report.passed
        [warning] = report.warnings
        assert warning.rule.kwargs == {"column": "insured", "mostly": 0.8}
        assert "more than the 20% tolerated (mostly=0.8)" in warning.describe()
        assert "unlabeled" in warning.describe()

    def test_a_missing_target_column_is_still_an_error(self, spec_from) -> None:
        report = validate(survey_spec(spec_from), survey(100, unlabeled=0.0).drop(columns=["insured"]))

        [line] = report.lines()
        assert line.startswith("column 'insured': expect_column_to_exist() failed: the column is missing")


class TestTolerance:
    def test_two_legitimate_rows_just_outside_the_learned_range_do_not_reject_a_clean_batch(self, spec_from) -> None:
        spec = diamonds_spec(spec_from, profile={"range_margin": 0.0})  # learned max: 69.9, as in the finding
        profile = profiling.learn_profile(diamonds(2000), spec)
        batch = diamonds(2000, seed=1)
        batch.loc[[10, 20], "table"] = 70.0

        assert validate(spec, batch, profile).passed

    def test_many_rows_outside_the_learned_range_reject_the_batch_with_their_share(self, spec_from) -> None:
        spec = diamonds_spec(spec_from, profile={"range_margin": 0.0})
        profile = profiling.learn_profile(diamonds(2000), spec)
        batch = diamonds(2000, seed=1)
        batch.loc[:24, "table"] = 70.0

        [line] = validate(spec, batch, profile).lines()

        assert line.startswith("column 'table': expect_column_values_to_be_between(min_value=50.0, max_value=69.9)")
        assert "25 of 2000 rows unexpected (1.25%), more than the 1% tolerated (mostly=0.99), e.g. [70.0]" in line
        assert line.endswith("[error, from profile]")

    def test_the_profiles_tolerance_comes_from_the_spec(self, spec_from) -> None:
        spec = diamonds_spec(spec_from, profile={"range_margin": 0.0, "mostly": 1.0})
        profile = profiling.learn_profile(diamonds(2000), spec)
        batch = diamonds(2000, seed=1)
        batch.loc[[10], "table"] = 70.0

        [line] = validate(spec, batch, profile).lines()
        assert "1 of 2000 rows unexpected (0.05%), e.g. [70.0]" in line and "tolerated" not in line

    @pytest.mark.parametrize(("mostly", "passed"), [(None, False), (0.999, True)])
    def test_a_contract_is_strict_unless_it_states_a_tolerance(self, spec_from, mostly, passed) -> None:
        contract = {"max": 69.9} | ({"mostly": mostly} if mostly else {})
        spec = diamonds_spec(spec_from, columns={"table": contract})
        batch = diamonds(2000, seed=1)
        batch.loc[[10, 20], "table"] = 70.0

        assert validate(spec, batch).passed is passed

    def test_a_learned_value_set_tolerates_a_rare_new_value(self, spec_from) -> None:
        spec = diamonds_spec(spec_from)
        profile = profiling.learn_profile(diamonds(2000), spec)
        batch = diamonds(2000, seed=1)
        batch.loc[[5], "cut"] = "Very Good"

        assert validate(spec, batch, profile).passed
        batch.loc[:99, "cut"] = "Very Good"
        [line] = validate(spec, batch, profile).lines()
        assert "column 'cut': expect_column_values_to_be_in_set" in line and "(5.00%)" in line


class TestAcceptedTypes:
    def test_with_the_profile_off_text_in_a_numeric_column_is_rejected(self, spec_from) -> None:
        spec = diamonds_spec(spec_from, profile={"enabled": False})
        batch = diamonds(200).astype({"table": object})
        batch.loc[:, "table"] = batch["table"].map(lambda value: f"{value:.1f}".replace(".", ","))

        report = validate(spec, batch, profile=None, kinds=NUMERIC_SCHEMA)

        [line] = report.lines()
        assert line.startswith("column 'table': expect_column_values_to_be_in_type_list(type_list=numbers)")
        assert "[error, from accepted data schema (double)]" in line

    def test_a_broken_column_is_given_one_reason(self, spec_from, penguins: pd.DataFrame) -> None:
        spec = spec_from(quality={"columns": {"bill_length_mm": {"type": "number", "min": 10, "max": 100}}})
        batch = penguins.head(50).astype({"bill_length_mm": object})
        batch.loc[:2, "bill_length_mm"] = ["long", "short", "39,1"]
        profile = profiling.learn_profile(penguins, spec)
        kinds = {"bill_length_mm": ("numeric", "double")}

        report = validate(spec, batch, profile, kinds)

        assert not report.passed
        lines = [line for line in report.lines() if line.startswith("column 'bill_length_mm'")]
        assert len(lines) == 1, lines
        assert "expect_column_values_to_be_in_type_list" in lines[0]
        assert "must be of the same type" not in "\n".join(report.lines())

    def test_a_warning_on_types_does_not_hide_a_blocking_failure(self, spec_from, penguins: pd.DataFrame) -> None:
        # before any batch was accepted, only the contract speaks to types, here as a warning
        spec = spec_from(quality={"columns": {"bill_length_mm": {"type": "number", "severity": "warn"}}})
        batch = penguins.head(50).astype({"bill_length_mm": object})
        batch.loc[:3, "bill_length_mm"] = ["long", "short", "39,1", None]
        never_null = builders.Rule("expect_column_values_to_not_be_null", {"column": "bill_length_mm"}, "error", "test")
        rules = builders.batch_rules(spec, list(batch.columns), None, len(batch)) + [never_null]

        report = gx_suites.validate(batch, rules, "raw_batch")

        assert [o.rule.expectation for o in report.errors] == ["expect_column_values_to_not_be_null"]
        assert [o.rule.expectation for o in report.warnings] == ["expect_column_values_to_be_in_type_list"]

    def test_a_column_without_values_has_no_type_to_break(self, spec_from) -> None:
        spec = diamonds_spec(spec_from)
        batch = diamonds(100).assign(gift_wrapped=np.nan)
        kinds = {**NUMERIC_SCHEMA, "gift_wrapped": ("boolean", "bool")}

        assert validate(spec, batch, kinds=kinds).passed
        assert not validate(spec, batch.assign(gift_wrapped=1.0), kinds=kinds).passed
