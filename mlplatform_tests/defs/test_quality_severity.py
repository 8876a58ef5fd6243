"""A rule's severity through Dagster: ``warn`` annotates the batch check (WARN) and the batch is accepted;
``error`` blocks it (ERROR), so nothing downstream runs and the batch waits in quarantine."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from mlplatform.definitions import INGEST_BATCH, build_definitions
from mlplatform_tests.defs.test_assets import settings_for


@pytest.mark.parametrize(
    ("severity", "check_severity", "accepted"),
    [("warn", dg.AssetCheckSeverity.WARN, True), ("error", dg.AssetCheckSeverity.ERROR, False)],
)
def test_a_failing_rules_severity_decides_whether_the_batch_goes_on(
    tmp_path: Path, write_spec, severity: str, check_severity: dg.AssetCheckSeverity, accepted: bool
) -> None:
    # Most penguins' bills are longer than 40 mm: the rule fails on about two thirds of the rows.
    contract = {"bill_length_mm": {"max": 40, "severity": severity}}
    spec = write_spec(quality={"columns": contract})
    job = build_definitions(settings_for(tmp_path, spec)).resolve_job_def(INGEST_BATCH)

    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)

    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "raw_batch_is_valid"]
    assert not check.passed and check.severity == check_severity
    assert "column 'bill_length_mm': expect_column_values_to_be_between(min_value=None, max_value=40.0)" in (
        check.description
    )
    assert f"[{severity}, from spec]" in check.description
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert ("accepted_data" in materialized) is accepted
    assert result.success is accepted
    quarantine = tmp_path / "home" / "artifacts" / "batches" / "quarantine"
    assert quarantine.exists() is not accepted
    if accepted:
        assert "1 warning(s)" in check.description and check.metadata["warnings"].value == 1
