"""Dagster objects, by domain. Thin: each asset calls ``mlplatform.lib`` and reports what it did."""
