"""Freshness: how old the accepted data and the champion may get (the spec's ``monitoring.freshness``), as
Dagster freshness policies. Dagster's freshness daemon (part of ``mlplatform dev``) marks each asset PASS, WARN
or FAIL in the UI; ``freshness_alerts`` (``mlplatform.defs.automation.alerts``) alerts on FAIL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import dagster as dg

from mlplatform.lib.spec import Freshness

# Dagster refuses a freshness window shorter than this; the spec's windows are no shorter.
SHORTEST_WINDOW = timedelta(minutes=1)


def freshness_policies(freshness: Freshness) -> dict[str, dg.FreshnessPolicy]:
    """A time-window policy per asset the spec gives hours for: FAIL past the window, WARN past
    ``warn_fraction`` of it (no warning when that is the whole window, or under a minute)."""
    windows = {"accepted_data": freshness.accepted_data_hours, "champion_model": freshness.champion_hours}
    policies = {}
    for asset, hours in windows.items():
        if hours is None:
            continue
        fail = timedelta(hours=hours)  # at least a minute: the spec says so
        warn = fail * freshness.warn_fraction
        policies[asset] = dg.FreshnessPolicy.time_window(
            fail_window=fail, warn_window=warn if SHORTEST_WINDOW <= warn < fail else None
        )
    return policies


def with_freshness(assets: Sequence[dg.AssetsDefinition], freshness: Freshness) -> list[dg.AssetsDefinition]:
    """``assets`` with the spec's freshness policies attached to the assets they name."""
    policies = freshness_policies(freshness)
    if not policies:
        return list(assets)

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        policy = policies.get(spec.key.to_user_string())
        return dg.apply_freshness_policy(spec, policy) if policy else spec

    return list(dg.map_asset_specs(attach, assets))
