"""The project spec as a resource, read when a run starts so that a bad spec fails that run, clearly,
and never the code location's load."""

from __future__ import annotations

import dagster as dg

from mlplatform.lib.spec import ProjectSpec, load_spec


class ProjectSpecResource(dg.ConfigurableResource):
    """The spec file that names the problem and the data source (override it per run in the launchpad)."""

    spec_path: str

    def load(self) -> ProjectSpec:
        return load_spec(self.spec_path)
