"""Plain functions for each stage of the lifecycle, one folder per domain (the same names as ``mlplatform.defs``)
and the cross-cutting spec, storage and project files at the top. Nothing here imports Dagster, so the same code
serves training (through the assets in ``mlplatform.defs``), tests, benchmarks and the prediction service."""
