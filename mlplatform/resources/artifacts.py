"""Artifact storage: a local folder or an S3 prefix, through one path type (universal_pathlib).

``ArtifactStore`` writes files people open (reports, plots); ``ArtifactIOManager`` stores asset values:
DataFrames as Parquet, everything else with joblib. Local writes go to a temporary name first and are
renamed into place, so a crash never leaves a half-written artifact where a reader would find it.
"""

from __future__ import annotations

import io
import shutil

import dagster as dg
import joblib
import pandas as pd
from pydantic import Field
from upath import UPath

from mlplatform.lib.storage import is_local, write_atomically, write_parquet


class ArtifactStore(dg.ConfigurableResource):
    """Files for people: evaluation reports and plots, under ``root`` (a folder or s3://bucket/prefix)."""

    root: str

    def path(self, *parts: str) -> UPath:
        return UPath(self.root).joinpath(*parts)

    def write_bytes(self, payload: bytes, *parts: str) -> str:
        target = self.path(*parts)
        write_atomically(target, payload)
        return str(target)


class ArtifactIOManager(dg.ConfigurableIOManager):
    """Stores each asset's latest value under ``root``/assets: Parquet for DataFrames, joblib otherwise.

    Local files are written and read by pyarrow and joblib directly, without a copy of the whole value in
    memory; object storage gets one PUT or GET per value.
    """

    root: str
    keep_runs: int = Field(
        default=5,
        description="Step outputs inside graph-backed assets (tuned candidates) are kept per run for the last "
        "this many finished runs (re-executing a run from a failure reads them); older runs' are deleted.",
    )

    def _base(self, context: dg.InputContext | dg.OutputContext) -> UPath:
        if context.has_asset_key:
            return UPath(self.root).joinpath("assets", *context.asset_key.path)
        # an op's output inside a graph-backed asset (one tuned candidate): kept per run and step
        output = context if isinstance(context, dg.OutputContext) else context.upstream_output
        return UPath(self.root).joinpath("steps", *output.get_identifier())

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        base = self._base(context)
        if isinstance(obj, pd.DataFrame):
            target = base.with_name(base.name + ".parquet")
            write_atomically(target, lambda destination: write_parquet(obj, destination))
        else:
            target = base.with_name(base.name + ".joblib")
            write_atomically(target, lambda destination: joblib.dump(obj, destination))
        context.add_output_metadata({"path": dg.MetadataValue.path(str(target))})
        if not context.has_asset_key:
            self._forget_old_runs(context.step_context.instance)

    def _forget_old_runs(self, instance: dg.DagsterInstance) -> None:
        """Delete the step outputs of finished runs older than the last ``keep_runs``. Runs still going, and
        folders of runs this instance does not know (another instance may share the storage), are left alone."""
        steps = UPath(self.root) / "steps"
        folders = {folder.name: folder for folder in steps.iterdir()} if steps.exists() else {}
        if len(folders) <= self.keep_runs:
            return
        records = instance.get_run_records(dg.RunsFilter(run_ids=list(folders)))
        finished = [record for record in records if record.dagster_run.is_finished]
        finished.sort(key=lambda record: record.end_time or record.create_timestamp.timestamp(), reverse=True)
        for record in finished[self.keep_runs :]:
            folder = folders[record.dagster_run.run_id]
            if is_local(folder):
                shutil.rmtree(folder.path, ignore_errors=True)
            else:
                folder.fs.rm(folder.path, recursive=True)

    def load_input(self, context: dg.InputContext) -> object:
        base = self._base(context)
        parquet = base.with_name(base.name + ".parquet")
        if parquet.exists():
            return pd.read_parquet(parquet.path if is_local(parquet) else io.BytesIO(parquet.read_bytes()))
        stored = base.with_name(base.name + ".joblib")
        if not stored.exists():
            what = context.asset_key.to_user_string() if context.has_asset_key else "this step's input"
            raise FileNotFoundError(
                f"{what} has not been materialized under {self.root} (looked for {parquet} and {stored})"
            )
        return joblib.load(stored.path if is_local(stored) else io.BytesIO(stored.read_bytes()))
