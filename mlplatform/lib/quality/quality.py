"""Data quality with Great Expectations 1.x: suites as code, from three places.

1. the spec's contract: required columns (the target among them), declared types, ranges and allowed
   values, and at most ``max_unlabeled_fraction`` of rows without a target when the spec sets it;
2. the accepted data: its column types always (a batch that cannot be appended to it is never accepted),
   and, with the profile on, a profile learned from it: its columns, ranges (with a margin), category sets
   and null fractions, stored with the data version it came from;
3. expectations the user lists in the spec, by their GX name.

Each rule carries a severity: ``error`` blocks what is downstream, ``warn`` only annotates. GX itself is
imported only by ``validate``, so code that does not validate never pays for its import.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from pandas.api import types

from mlplatform.lib.data import schema
from mlplatform.lib.spec import ProjectSpec, Severity

NUMERIC_TYPES = (
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64",
)  # fmt: skip
BOOLEAN_TYPES = ("bool", "boolean")
TYPE_EXPECTATIONS = frozenset({"expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type"})
SAMPLE_SIZE = 10


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


def learn_profile(frame: pd.DataFrame, spec: ProjectSpec) -> dict:
    """What the accepted data looks like, as plain JSON: the expectations of the next batch come from it."""
    settings = spec.quality.profile
    columns: dict[str, dict] = {}
    for name in frame.columns:
        if name in spec.problem.drop_columns:
            continue
        series = frame[name]
        entry: dict = {"null_fraction": float(series.isna().mean())}
        present = series.dropna()
        if types.is_bool_dtype(series):
            entry["kind"] = "boolean"
        elif types.is_numeric_dtype(series):
            entry["kind"] = "numeric"
            if not present.empty:
                entry["min"], entry["max"] = float(present.min()), float(present.max())
        elif types.is_datetime64_any_dtype(series):
            entry["kind"] = "datetime"
        else:
            entry["kind"] = "category"
            values = present.astype(str).unique()
            if len(values) <= settings.max_categories:
                entry["values"] = sorted(values.tolist())
        columns[str(name)] = entry
    return {"rows": len(frame), "columns": columns}


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


def check_expectations(spec: ProjectSpec) -> int:
    """Build the spec's own expectations in GX, so a misspelt name or argument fails now, not mid-run."""
    rules = user_rules(spec)
    if rules:
        _gx_suite(rules, "spec_check", None)
    return len(rules)


def _deduplicated(rules: list[Rule]) -> list[Rule]:
    """One rule per (expectation, arguments): the first wins, so the spec's severity beats the profile's."""
    seen, kept = set(), []
    for rule in rules:
        key = (rule.expectation, repr(sorted(rule.kwargs.items())))
        if key not in seen:
            seen.add(key)
            kept.append(rule)
    return kept


@dataclass(frozen=True)
class Outcome:
    rule: Rule
    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    sample: tuple = ()
    observed: object = None
    error: str | None = None
    rows: int = 0  # the rows the rule was evaluated on
    superseded: bool = False  # failed, but its column's failed type check is the reason worth reading

    def describe(self) -> str:
        where = f"column {self.rule.column!r}" if self.rule.column else "table"
        if self.rule.expectation == "expect_column_to_exist":
            found = "the column is missing"
        elif self.error:
            found = f"could not be evaluated: {self.error}"
        elif self.unexpected_count is not None:
            percent = f"{self.unexpected_percent:.2f}%" if self.unexpected_percent is not None else "?"
            found = f"{self.unexpected_count} of {self.rows} rows unexpected ({percent})"
            mostly = self.rule.mostly
            if mostly is not None:
                found += f", more than the {(1 - mostly) * 100:.4g}% tolerated (mostly={mostly:g})"
            if self.sample and self.rule.expectation != "expect_column_values_to_not_be_null":  # samples of nothing
                found += f", e.g. {list(self.sample)}"
        else:
            found = f"observed {self.observed!r}"
        if self.rule.note:
            found += f"; {self.rule.note}"
        return f"{where}: {self.rule.describe()} failed: {found} [{self.rule.severity}, from {self.rule.origin}]"


@dataclass
class QualityReport:
    suite: str
    rows: int
    outcomes: list[Outcome]
    seconds: float
    docs_index: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and not o.superseded and o.rule.severity == "error"]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and not o.superseded and o.rule.severity == "warn"]

    @property
    def passed(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        return [o.describe() for o in self.errors + self.warnings]

    def table(self) -> pd.DataFrame:
        failed = self.errors + self.warnings
        return pd.DataFrame(
            {
                "severity": [o.rule.severity for o in failed],
                "column": [o.rule.column or "(table)" for o in failed],
                "rule": [o.rule.describe() for o in failed],
                "unexpected": [o.unexpected_count for o in failed],
                "percent": [
                    round(o.unexpected_percent, 3) if o.unexpected_percent is not None else None for o in failed
                ],
                "mostly": [o.rule.mostly for o in failed],
                "sample": [", ".join(map(str, o.sample)) or (o.error or "") for o in failed],
                "origin": [o.rule.origin for o in failed],
            }
        )

    def as_dict(self) -> dict:
        return {
            "suite": self.suite,
            "rows": self.rows,
            "passed": self.passed,
            "expectations": len(self.outcomes),
            "failures": [
                {
                    "column": o.rule.column,
                    "rule": o.rule.describe(),
                    "severity": o.rule.severity,
                    "origin": o.rule.origin,
                    "unexpected_count": o.unexpected_count,
                    "unexpected_percent": o.unexpected_percent,
                    "mostly": o.rule.mostly,
                    "sample": [str(v) for v in o.sample],
                    "error": o.error,
                    "message": o.describe(),
                }
                for o in self.errors + self.warnings
            ],
            "data_docs": str(self.docs_index) if self.docs_index else None,
        }


def validate(frame: pd.DataFrame, rules: list[Rule], suite: str, docs_dir: Path | None = None) -> QualityReport:
    """Run the rules as one GX suite. A fast pass answers pass/fail; only when something fails is the suite
    run again with details (counts, samples) and, given ``docs_dir``, rendered as GX Data Docs there."""
    started = time.perf_counter()
    view = _validation_view(frame, rules)
    docs_index = None
    if _quick_pass(view, rules, suite):
        outcomes = [Outcome(rule, True, rows=len(frame)) for rule in rules]
    else:
        context, definition = _gx_suite(rules, suite, docs_dir)
        results, docs_index = _detailed_run(context, definition, view, docs_dir)
        by_rule = {int(index): result for result in results for index in result.expectation_config.meta["rules"]}
        outcomes = _one_reason_per_column(
            [_outcome(rule, by_rule[index], len(frame)) for index, rule in enumerate(rules)]
        )
    return QualityReport(suite, len(frame), outcomes, time.perf_counter() - started, docs_index)


_SEVERITY_RANK = {"warn": 0, "error": 1}


def _one_reason_per_column(outcomes: list[Outcome]) -> list[Outcome]:
    """Where a column has the wrong type, its other failures follow from it (a range compared with text,
    say): they are set aside, unless one would block where the type failure only warns."""
    worst_type_failure: dict[str, int] = {}
    for outcome in outcomes:
        if not outcome.success and outcome.rule.expectation in TYPE_EXPECTATIONS and outcome.rule.column:
            rank = _SEVERITY_RANK[outcome.rule.severity]
            worst_type_failure[outcome.rule.column] = max(rank, worst_type_failure.get(outcome.rule.column, rank))
    return [
        replace(outcome, superseded=True)
        if not outcome.success
        and outcome.rule.expectation not in TYPE_EXPECTATIONS
        and outcome.rule.column in worst_type_failure
        and _SEVERITY_RANK[outcome.rule.severity] <= worst_type_failure[outcome.rule.column]
        else outcome
        for outcome in outcomes
    ]


# What every quick pass shares: one ephemeral GX context with one pandas data source, built once per process.
# Building them costs more than a small suite's whole run (each addition re-serializes the context's
# configuration as YAML). The lock lets one thread at a time build or use them.
_runtime: dict = {}
_runtime_lock = threading.Lock()
_NO_ROWS = pd.DataFrame()


def _quick_pass(view: pd.DataFrame, rules: list[Rule], suite: str) -> bool:
    with _runtime_lock:
        return _run_quick(_batch_definition(), view, rules, suite)


def _run_quick(batch_definition, view: pd.DataFrame, rules: list[Rule], suite: str) -> bool:
    """A BOOLEAN_ONLY run of a suite that is not stored anywhere: nothing is kept between validations."""
    gx = _import_gx()
    checked = gx.ExpectationSuite(name=suite, expectations=_expectations(rules))
    try:
        batch = batch_definition.get_batch(batch_parameters={"dataframe": view})
        return bool(batch.validate(checked, result_format="BOOLEAN_ONLY").success)
    finally:
        # The data source's execution engine holds on to the last frame it validated: validate an empty one, so
        # a million-row batch is not kept alive until the next validation.
        released = gx.ExpectationSuite(name="release", expectations=[])
        batch_definition.get_batch(batch_parameters={"dataframe": _NO_ROWS}).validate(released)


def _batch_definition():
    """The shared whole-dataframe batch definition (the caller holds ``_runtime_lock``)."""
    if "batch_definition" not in _runtime:
        gx = _import_gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = context.data_sources.add_pandas("mlplatform").add_dataframe_asset("frame")
        _runtime["batch_definition"] = asset.add_batch_definition_whole_dataframe("batch")
    return _runtime["batch_definition"]


def _import_gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no phoning home from a pipeline step
    import great_expectations as gx
    from great_expectations.execution_engine import pandas_execution_engine

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    # GX stamps every in-memory batch under HASH_THRESHOLD bytes with an MD5 of all its values (the result's
    # batch_markers["pandas_data_fingerprint"]), which nothing reads; at a million rows that hash is most of
    # a small suite's time. Frames above the threshold already skip it; this makes every frame skip it. It is a
    # module constant, not API: should GX rename it, this line costs nothing and the hash comes back.
    pandas_execution_engine.HASH_THRESHOLD = 0
    return gx


def _validation_view(frame: pd.DataFrame, rules: list[Rule]) -> pd.DataFrame:
    """pandas' nullable numbers (Int64, Float64) as float64, which GX's type checks recognise; and a column
    without any value, whose type is only the reader's guess (float64 for an empty CSV column), as objects
    so that a type check passes it value by value."""
    changed = {
        name: frame[name].astype("float64")
        for name, dtype in frame.dtypes.items()
        if isinstance(dtype, pd.api.extensions.ExtensionDtype)
        and types.is_numeric_dtype(dtype)
        and not types.is_bool_dtype(dtype)
    }
    typed = {rule.column for rule in rules if rule.expectation in TYPE_EXPECTATIONS}
    for name in frame.columns:
        if str(name) in typed and frame[name].isna().all():
            changed[name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame.assign(**changed) if changed else frame


def _expectations(rules: list[Rule]) -> list:
    """The rules as GX expectations, new objects on every call (an expectation belongs to one suite)."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    # GX's cost is mostly per expectation, not per row: plain "column exists" rules are checked together by one
    # table-level expectation, and _outcome reads each column's verdict from its list of missing columns.
    exists = {
        i
        for i, rule in enumerate(rules)
        if rule.expectation == "expect_column_to_exist" and rule.kwargs.keys() == {"column"}
    }
    exists = exists if len(exists) > 1 else set()
    groups = [[i] for i in range(len(rules)) if i not in exists] + ([sorted(exists)] if exists else [])
    expectations = []
    for covered in groups:
        rule = rules[covered[0]]
        kind, kwargs = rule.expectation, rule.kwargs
        if len(covered) > 1:
            kind = "expect_table_columns_to_match_set"
            kwargs = {"column_set": [rules[i].kwargs["column"] for i in covered], "exact_match": False}
        meta = {
            "severity": "error" if any(rules[i].severity == "error" for i in covered) else rule.severity,
            "origin": ", ".join(dict.fromkeys(rules[i].origin for i in covered)),
            "rules": covered,  # GX reorders its results
        }
        configuration = ExpectationConfiguration(type=kind, kwargs=kwargs, meta=meta)
        try:
            expectations.append(configuration.to_domain_obj())
        except Exception as exc:  # GX raises several types for an unknown name or bad arguments
            raise QualityError(f"{rule.origin}: {rule.expectation} with {rule.kwargs}: {exc}") from exc
    return expectations


def _gx_suite(rules: list[Rule], suite_name: str, docs_dir: Path | None):
    """A context of its own with the suite stored in it, for the detailed pass (a checkpoint and Data Docs need
    stored objects) and for checking a spec's expectations."""
    gx = _import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="mlplatform",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    batch = context.data_sources.add_pandas("mlplatform").add_dataframe_asset(suite_name)
    expectations = _expectations(rules)
    # Given to the constructor, not one by one: add_expectation compares each newcomer with every expectation
    # already added (a pydantic dict() of both), which is quadratic in the rules.
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite_name, data=batch.add_batch_definition_whole_dataframe("batch"), suite=suite)
    )
    return context, definition


def _detailed_run(context, definition, view: pd.DataFrame, docs_dir: Path | None):
    import great_expectations as gx

    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
    if docs_dir is None:
        return definition.run(batch_parameters={"dataframe": view}, result_format=result_format).results, None
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{definition.name}_checkpoint",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["mlplatform"])],
            result_format=result_format,
        )
    )
    [run] = checkpoint.run(batch_parameters={"dataframe": view}).run_results.values()
    return run.results, Path(docs_dir) / "index.html"


def _outcome(rule: Rule, result, rows: int) -> Outcome:
    details = result.result or {}
    error = _exception_message(result.exception_info)
    percent = details.get("unexpected_percent")
    success = bool(result.success)
    if result.expectation_config.type != rule.expectation:  # one column of a combined "columns exist" check
        missing = (details.get("details") or {}).get("mismatched", {}).get("missing", [])
        success = error is None and rule.column not in missing
    return Outcome(
        rule=rule,
        success=success,
        unexpected_count=details.get("unexpected_count"),
        unexpected_percent=None if percent is None or (isinstance(percent, float) and math.isnan(percent)) else percent,
        sample=tuple(_plain(v) for v in dict.fromkeys(map(_hashable, details.get("partial_unexpected_list") or [])))[
            :SAMPLE_SIZE
        ],
        observed=_plain(details.get("observed_value")),
        error=error,
        rows=rows,
    )


def _exception_message(info) -> str | None:
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():  # keyed by metric when a metric failed to compute
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _hashable(value):
    if isinstance(value, dict):  # a row, for expectations over several columns
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    return tuple(value) if isinstance(value, list) else value


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return value
