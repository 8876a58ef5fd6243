"""Artifact storage: a local folder or an S3 prefix, through one path type (universal_pathlib).

``ArtifactStore`` writes files people open (reports, plots); ``ArtifactIOManager`` stores asset values:
DataFrames as Parquet, everything else with joblib. Local writes go to a temporary name first and are
renamed into place, so a crash never leaves a half-written artifact where a reader would find it.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable

import dagster as dg
import joblib
import pandas as pd
from pydantic import Field
from upath import UPath

from mlplatform.lib.storage import is_local, write_atomically, write_parquet
from mlplatform.resources.object_storage import ObjectStore, s3_client


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
    memory, through a temporary name renamed into place. Under an ``s3://`` root each value is one PUT or GET
    through a dagster-aws ``S3Resource`` client, every PUT with the ``encryption`` arguments.
    """

    root: str
    keep_runs: int = Field(
        default=5,
        description="Step outputs inside graph-backed assets (tuned candidates) are kept per run for the last "
        "this many finished runs (re-executing a run from a failure reads them); older runs' are deleted.",
    )
    encryption: dict[str, str] = Field(
        default_factory=lambda: {"ServerSideEncryption": "AES256"},
        description="Server-side encryption arguments of every PutObject under an s3:// root "
        "(resources.object_storage.encryption_arguments of the settings).",
    )

    endpoint_url: str | None = Field(
        default=None, description="The S3 API of an s3:// root (MinIO, moto); None: boto's own (AWS_ENDPOINT_URL_S3)."
    )
    region_name: str | None = Field(default=None, description="The bucket's region; None: boto's own (AWS_REGION).")

    def _objects(self) -> ObjectStore:
        # dagster-aws's client, made once per process (object_storage.s3_client) rather than given as a nested
        # resource: an IO manager with a nested resource becomes a generator resource, which sensor contexts would
        # then have to open as a context manager. Its credentials come from boto's chain, as the `s3` resource's.
        return ObjectStore(s3_client(self.endpoint_url, self.region_name), self.encryption)

    def _base(self, context: dg.InputContext | dg.OutputContext) -> UPath:
        if context.has_asset_key:
            return UPath(self.root).joinpath("assets", *context.asset_key.path)
        # an op's output inside a graph-backed asset (one tuned candidate): kept per run and step
        output = context if isinstance(context, dg.OutputContext) else context.upstream_output
        return UPath(self.root).joinpath("steps", *output.get_identifier())

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        base = self._base(context)
        suffix, write = _format_of(obj)
        target = base.with_name(base.name + suffix)
        if is_local(target):
            write_atomically(target, write)
        else:
            buffer = io.BytesIO()
            write(buffer)
            self._objects().put(str(target), buffer.getvalue())
        context.add_output_metadata({"path": dg.MetadataValue.path(str(target))})
        if not context.has_asset_key:
            self._forget_old_runs(context.step_context.instance)

    def _forget_old_runs(self, instance: dg.DagsterInstance) -> None:
        """Delete the step outputs of finished runs older than the last ``keep_runs``. Runs still going, and
        folders of runs this instance does not know (another instance may share the storage), are left alone."""
        steps = UPath(self.root) / "steps"
        if is_local(steps):
            folders = {folder.name: str(folder) for folder in steps.iterdir()} if steps.exists() else {}
        else:
            folders = self._objects().folders(str(steps))
        if len(folders) <= self.keep_runs:
            return
        records = instance.get_run_records(dg.RunsFilter(run_ids=list(folders)))
        finished = [record for record in records if record.dagster_run.is_finished]
        finished.sort(key=lambda record: record.end_time or record.create_timestamp.timestamp(), reverse=True)
        for record in finished[self.keep_runs :]:
            folder = folders[record.dagster_run.run_id]
            if is_local(steps):
                shutil.rmtree(folder, ignore_errors=True)
            else:
                self._objects().delete_folder(folder)

    def load_input(self, context: dg.InputContext) -> object:
        base = self._base(context)
        parquet = base.with_name(base.name + ".parquet")
        stored = base.with_name(base.name + ".joblib")
        if is_local(base):
            if parquet.exists():
                return pd.read_parquet(parquet.path)
            if stored.exists():
                return joblib.load(stored.path)
        else:
            objects = self._objects()
            for path, read in ((parquet, pd.read_parquet), (stored, joblib.load)):
                payload = objects.get(str(path))
                if payload is not None:
                    return read(io.BytesIO(payload))
        what = context.asset_key.to_user_string() if context.has_asset_key else "this step's input"
        raise FileNotFoundError(
            f"{what} has not been materialized under {self.root} (looked for {parquet} and {stored})"
        )


def _format_of(value: object) -> tuple[str, Callable[[str | io.BytesIO], None]]:
    """How a value is stored: a DataFrame as Parquet, anything else with joblib; the suffix and the writer."""
    if isinstance(value, pd.DataFrame):
        return ".parquet", lambda destination: write_parquet(value, destination)
    return ".joblib", lambda destination: joblib.dump(value, destination)
