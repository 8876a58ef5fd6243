"""Freshness policies from the spec's ``monitoring.freshness``, on the accepted data and the champion. The
daemon's verdict (stale in the UI, an alert) is tested with the real daemon (test_alerts_daemon.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from mlplatform.definitions import build_definitions
from mlplatform.lib.spec import SpecError, load_spec
from mlplatform.settings import Settings


def policies(tmp_path: Path, write_spec, **freshness) -> dict[str, dg.FreshnessPolicy]:
    spec = write_spec(monitoring={"freshness": freshness})
    settings = Settings.from_env({"MLPLATFORM_HOME": str(tmp_path / "home"), "MLPLATFORM_SPEC": str(spec)})
    graph = build_definitions(settings).resolve_asset_graph()
    return {
        key.to_user_string(): graph.get(key).freshness_policy
        for key in graph.get_all_asset_keys()
        if graph.get(key).freshness_policy is not None
    }


def windows(policy: dg.FreshnessPolicy) -> tuple[timedelta, timedelta | None]:
    warn = policy.warn_window.to_timedelta() if policy.warn_window else None
    return policy.fail_window.to_timedelta(), warn


def test_the_spec_s_windows_become_policies_on_the_accepted_data_and_the_champion(tmp_path: Path, write_spec) -> None:
    found = policies(tmp_path, write_spec, accepted_data_hours=168, champion_hours=24, warn_fraction=0.75)

    assert set(found) == {"accepted_data", "champion_model"}
    assert windows(found["accepted_data"]) == (timedelta(days=7), timedelta(hours=126))
    assert windows(found["champion_model"]) == (timedelta(hours=24), timedelta(hours=18))


def test_one_window_alone_and_no_warning_at_the_whole_window(tmp_path: Path, write_spec) -> None:
    found = policies(tmp_path, write_spec, champion_hours=0.5, warn_fraction=1.0)

    assert set(found) == {"champion_model"}
    assert windows(found["champion_model"]) == (timedelta(minutes=30), None)


def test_no_freshness_section_no_policy(tmp_path: Path, write_spec) -> None:
    assert policies(tmp_path, write_spec) == {}


def test_a_window_dagster_cannot_keep_is_refused_by_the_spec(write_spec) -> None:
    with pytest.raises(SpecError, match=r"monitoring\.freshness\.accepted_data_hours"):
        load_spec(write_spec(monitoring={"freshness": {"accepted_data_hours": 0.001}}))
