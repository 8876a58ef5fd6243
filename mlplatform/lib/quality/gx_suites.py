"""The Great Expectations adapter: rules (``builders``) run as a GX suite, a fast pass first, then, only when
something failed, a detailed run through a checkpoint that renders Data Docs. GX itself is imported on first
use (``_import_gx``, where its analytics are switched off), so code that does not validate never pays for it.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
from pandas.api import types

from mlplatform.lib.quality.builders import TYPE_EXPECTATIONS, QualityError, Rule, user_rules
from mlplatform.lib.quality.outcomes import Outcome, QualityReport
from mlplatform.lib.spec import ProjectSpec

SAMPLE_SIZE = 10


def validate(frame: pd.DataFrame, rules: list[Rule], suite: str, docs_dir: Path | None = None) -> QualityReport:
    """Run the rules as one GX suite. A fast pass answers pass/fail; only when something fails is the suite
    run again with details (counts, samples) and, given ``docs_dir``, rendered as GX Data Docs there."""
    started = time.perf_counter()
    view = _validation_view(frame, rules)
    docs_index = None
    if _QUICK.passes(view, rules, suite):
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


_NO_ROWS = pd.DataFrame()


class QuickPass:
    """BOOLEAN_ONLY runs of suites that are not stored anywhere, on one ephemeral GX context with one pandas
    data source, built on first use and shared by every quick pass after it: building them costs more than a
    small suite's whole run (each addition re-serializes the context's configuration as YAML). One thread at a
    time builds or uses them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batch_definition = None

    def passes(self, view: pd.DataFrame, rules: list[Rule], suite: str) -> bool:
        with self._lock:
            batch_definition = self._shared_batch_definition()
            gx = _import_gx()
            checked = gx.ExpectationSuite(name=suite, expectations=_expectations(rules))
            try:
                batch = batch_definition.get_batch(batch_parameters={"dataframe": view})
                return bool(batch.validate(checked, result_format="BOOLEAN_ONLY").success)
            finally:
                # The data source's execution engine holds on to the last frame it validated: validate an empty
                # one, so a million-row batch is not kept alive until the next validation.
                released = gx.ExpectationSuite(name="release", expectations=[])
                batch_definition.get_batch(batch_parameters={"dataframe": _NO_ROWS}).validate(released)

    def _shared_batch_definition(self):
        if self._batch_definition is None:
            gx = _import_gx()
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            asset = context.data_sources.add_pandas("mlplatform").add_dataframe_asset("frame")
            self._batch_definition = asset.add_batch_definition_whole_dataframe("batch")
        return self._batch_definition


_QUICK = QuickPass()  # one per process: its context is the cost a second validation no longer pays


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


def check_expectations(spec: ProjectSpec) -> int:
    """Build the spec's own expectations in GX, so a misspelt name or argument fails now, not mid-run."""
    rules = user_rules(spec)
    if rules:
        _gx_suite(rules, "spec_check", None)
    return len(rules)
