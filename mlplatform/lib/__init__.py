"""Plain functions for each stage of the lifecycle. Nothing here imports Dagster, so the same code serves
training (through the assets in ``mlplatform.defs``), tests, benchmarks and the prediction service."""
