"""Monitoring computations without Dagster: drift statistics, live metrics, alerts."""
