"""The rules a batch is checked against, as plain values (GX runs them, in ``gx_suites``), from three places.

1. the spec's contract: required columns (the target among them), declared types, ranges and allowed
   values, and at most ``max_unlabeled_fraction`` of rows without a target when the spec sets it;
2. the accepted data: its column types always (a batch that cannot be appended to it is never accepted),
   and, with the profile on, the rules of a profile learned from it (``profiling``): its columns, ranges
   (with a margin), category sets and null fractions;
3. expectations the user lists in the spec, by their GX name.

Each rule carries a severity: ``error`` blocks what is downstream, ``warn`` only annotates.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from mlplatform.lib.data import schema
from mlplatform.lib.spec import ProjectSpec, Severity

NUMERIC_TYPES = (
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64",
)  # fmt: skip
BOOLEAN_TYPES = ("bool", "boolean")
TYPE_EXPECTATIONS = frozenset({"expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type"})


class QualityError(ValueError):
    """A suite that cannot be built, such as a user expectation GX does not know."""


@dataclass(frozen=True)
class Rule:
    expectation: str  # the GX expectation's snake_case name
    kwargs: dict
    severity: Severity
    origin: str  # "spec", "profile", "spec expectations[2]", ...
    note: str | None = None  # what a failure means to a person, when the expectation's name does not say it

    @property
    def column(self) -> str | None:
        column = self.kwargs.get("column")
        return str(column) if column is not None else None

    @property
    def mostly(self) -> float | None:
        mostly = self.kwargs.get("mostly")
        return float(mostly) if mostly is not None and mostly < 1 else None

    def describe(self) -> str:
        # mostly is said with the outcome, as the share tolerated
        shown = {k: v for k, v in self.kwargs.items() if k not in ("column", "column_list", "mostly")}
        if "value_set" in shown and len(shown["value_set"]) > 8:
            shown["value_set"] = [*shown["value_set"][:8], "..."]
        arguments = ", ".join(_argument(key, value) for key, value in shown.items())
        return f"{self.expectation}({arguments})"


def _argument(key: str, value: object) -> str:
    # eleven dtype names say less than one word
    named = {tuple(NUMERIC_TYPES): "numbers", tuple(BOOLEAN_TYPES): "booleans"}
    if key == "type_list" and tuple(value) in named:
        return f"{key}={named[tuple(value)]}"
    return f"{key}={value!r}"


_DECLARED = (
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_null",
)


def batch_rules(
    spec: ProjectSpec,
    columns: list[str],
    profile: dict | None,
    rows: int,
    accepted_kinds: dict[str, tuple[str, str]] | None = None,
) -> list[Rule]:
    """The suite for a raw batch with these columns: the accepted data's types and the contract, then the
    profile, then the user's expectations. ``accepted_kinds`` is ``BatchLedger.accepted_kinds()``."""
    # First, so that a type the accepted data fixes blocks even where the contract says "warn".
    rules = schema_rules(accepted_kinds or {}, columns) + contract_rules(spec, columns)
    if profile is not None and spec.quality.profile.enabled:
        # Where the spec states a column's range or values, the spec decides, not what was seen so far.
        declared = {(rule.expectation, rule.column) for rule in rules if rule.expectation in _DECLARED and rule.column}
        rules += [
            rule
            for rule in profile_rules(profile, spec, columns, rows)
            if (rule.expectation, rule.column) not in declared
        ]
    rules += user_rules(spec)
    return _deduplicated(rules)


def contract_rules(spec: ProjectSpec, columns: list[str]) -> list[Rule]:
    problem, quality = spec.problem, spec.quality
    present = set(columns)
    required = [problem.target, problem.id_column, problem.time_column]
    required += [name for name, contract in quality.columns.items() if contract.required]
    rules = [Rule("expect_column_to_exist", {"column": c}, "error", "spec") for c in dict.fromkeys(required) if c]
    unlabeled = f"unlabeled rows: the target {problem.target!r} is missing (cleaning drops such rows)"
    if problem.target in present and quality.max_unlabeled_fraction is not None:
        mostly = {"column": problem.target, "mostly": 1.0 - quality.max_unlabeled_fraction}
        rules.append(
            Rule(
                "expect_column_values_to_not_be_null", mostly, "error", "spec quality.max_unlabeled_fraction", unlabeled
            )
        )
    for column, contract in quality.columns.items():
        if column not in present:
            continue
        severity, base = contract.severity, {"column": column}
        tolerance = {"mostly": contract.mostly} if contract.mostly < 1 else {}
        if contract.type == "number":
            rules.append(
                Rule(
                    "expect_column_values_to_be_in_type_list",
                    {**base, "type_list": list(NUMERIC_TYPES)},
                    severity,
                    "spec",
                )
            )
        elif contract.type == "boolean":
            rules.append(
                Rule(
                    "expect_column_values_to_be_in_type_list",
                    {**base, "type_list": list(BOOLEAN_TYPES)},
                    severity,
                    "spec",
                )
            )
        if contract.min is not None or contract.max is not None:
            bounds = {"min_value": contract.min, "max_value": contract.max}
            rules.append(Rule("expect_column_values_to_be_between", {**base, **bounds, **tolerance}, severity, "spec"))
        if contract.allowed is not None:
            values = {"value_set": list(contract.allowed), **tolerance}
            rules.append(Rule("expect_column_values_to_be_in_set", {**base, **values}, severity, "spec"))
        if contract.max_null_fraction is not None:
            mostly = {**base, "mostly": 1.0 - contract.max_null_fraction}
            note = unlabeled if column == problem.target else None
            rules.append(Rule("expect_column_values_to_not_be_null", mostly, severity, "spec", note))
    if len(columns) >= 2 and quality.max_duplicate_fraction < 1.0:
        unique = {"column_list": list(columns), "mostly": 1.0 - quality.max_duplicate_fraction}
        rules.append(Rule("expect_compound_columns_to_be_unique", unique, quality.duplicates_severity, "spec"))
    return rules


def schema_rules(accepted_kinds: dict[str, tuple[str, str]], columns: list[str]) -> list[Rule]:
    """Numeric columns of the accepted data stay numeric and boolean ones boolean, whatever the profile and
    contract say: a batch of another type cannot be appended to the training data. Text against numbers is
    left to BatchLedger.accept (GX's type check does not know pandas' text dtype)."""
    type_lists = {schema.NUMERIC: list(NUMERIC_TYPES), schema.BOOLEAN: list(BOOLEAN_TYPES)}
    return [
        Rule(
            "expect_column_values_to_be_in_type_list",
            {"column": column, "type_list": type_lists[kind]},
            "error",
            f"accepted data schema ({data_type})",
        )
        for column, (kind, data_type) in accepted_kinds.items()
        if column in columns and kind in type_lists
    ]


def profile_rules(profile: dict, spec: ProjectSpec, columns: list[str], rows: int) -> list[Rule]:
    settings = spec.quality.profile
    severity, present, rules = settings.severity, set(columns), []
    for column, entry in profile["columns"].items():
        if column in spec.problem.drop_columns:
            continue
        rules.append(Rule("expect_column_to_exist", {"column": column}, severity, "profile"))
        if column not in present:
            continue
        # Types are held by schema_rules, profile on or off.
        base = {"column": column}
        tolerance = {"mostly": settings.mostly} if settings.mostly < 1 else {}
        if entry["kind"] == "numeric" and "min" in entry:
            span = entry["max"] - entry["min"] or abs(entry["max"]) or 1.0
            low = entry["min"] - settings.range_margin * span
            high = entry["max"] + settings.range_margin * span
            rules.append(
                Rule(
                    "expect_column_values_to_be_between",
                    {**base, "min_value": low, "max_value": high, **tolerance},
                    severity,
                    "profile",
                )
            )
        elif entry["kind"] == "category" and "values" in entry:
            values = {**base, "value_set": entry["values"], **tolerance}
            rules.append(Rule("expect_column_values_to_be_in_set", values, severity, "profile"))
        if column == spec.problem.target:
            continue  # how many rows may be unlabeled is the contract's call (max_unlabeled_fraction)
        # A small batch's null share wanders by chance: allow three binomial standard deviations on top.
        seen = entry["null_fraction"]
        chance = 3 * math.sqrt(seen * (1 - seen) / max(rows, 1))
        allowed_nulls = min(1.0, seen + settings.null_margin + chance)
        if allowed_nulls < 1.0:
            rules.append(
                Rule(
                    "expect_column_values_to_not_be_null", {**base, "mostly": 1.0 - allowed_nulls}, severity, "profile"
                )
            )
    return rules


def user_rules(spec: ProjectSpec) -> list[Rule]:
    return [
        Rule(e.expectation, dict(e.kwargs), e.severity, f"spec quality.expectations[{i}]")
        for i, e in enumerate(spec.quality.expectations)
    ]


def feature_rules(columns: list[str], target: str | None = None, task: str | None = None) -> list[Rule]:
    """What a model may be fed: every transformed feature present and finite, and for classification
    a target with at least two classes."""
    bound = 1e12  # a finite bound catches infinities, which "not null" lets through
    rules = []
    for column in columns:
        base = {"column": column}
        rules.append(Rule("expect_column_values_to_not_be_null", base, "error", "feature pipeline"))
        rules.append(
            Rule(
                "expect_column_values_to_be_between",
                {**base, "min_value": -bound, "max_value": bound},
                "error",
                "feature pipeline",
            )
        )
    if target is not None:
        rules.append(Rule("expect_column_values_to_not_be_null", {"column": target}, "error", "feature pipeline"))
        if task == "classification":
            rules.append(
                Rule(
                    "expect_column_unique_value_count_to_be_between",
                    {"column": target, "min_value": 2},
                    "error",
                    "feature pipeline",
                )
            )
    return rules


def finite_rules(columns: list[str]) -> list[Rule]:
    """Every present value is a finite number: what a model's numeric inputs must be before imputation."""
    bounds = {"min_value": -sys.float_info.max, "max_value": sys.float_info.max}
    return [
        Rule("expect_column_values_to_be_between", {"column": column, **bounds}, "error", "feature pipeline inputs")
        for column in columns
    ]


def _deduplicated(rules: list[Rule]) -> list[Rule]:
    """One rule per (expectation, arguments): the first wins, so the spec's severity beats the profile's."""
    seen, kept = set(), []
    for rule in rules:
        key = (rule.expectation, repr(sorted(rule.kwargs.items())))
        if key not in seen:
            seen.add(key)
            kept.append(rule)
    return kept
