"""The one place that reads the environment. Everything else receives a Settings.

| variable | meaning | default |
|---|---|---|
| MLPLATFORM_ENV | ``local`` (files under MLPLATFORM_HOME) or ``cloud`` (S3) | local |
| MLPLATFORM_HOME | the folder that holds all local state | ./.mlplatform |
| MLPLATFORM_SPEC | the project spec file | the bundled penguins example |
| MLPLATFORM_BUCKET | the bucket for artifacts when MLPLATFORM_ENV=cloud | (required there) |
| MLPLATFORM_PREFIX | the key prefix within that bucket | mlplatform |
| MLPLATFORM_EXECUTOR | ``in_process`` or ``multiprocess`` | in_process locally |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mlplatform.lib.spec import default_spec_path

Environment = Literal["local", "cloud"]
Executor = Literal["in_process", "multiprocess"]


class SettingsError(ValueError):
    """An environment variable holds a value the platform cannot use."""


@dataclass(frozen=True)
class Settings:
    env: Environment
    home: Path
    spec_path: Path
    executor: Executor
    bucket: str | None = None
    prefix: str = "mlplatform"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        env = environ.get("MLPLATFORM_ENV", "local")
        if env not in ("local", "cloud"):
            raise SettingsError(f"MLPLATFORM_ENV={env!r}: use 'local' or 'cloud'")
        executor = environ.get("MLPLATFORM_EXECUTOR", "in_process")
        if executor not in ("in_process", "multiprocess"):
            raise SettingsError(f"MLPLATFORM_EXECUTOR={executor!r}: use 'in_process' or 'multiprocess'")
        bucket = environ.get("MLPLATFORM_BUCKET") or None
        if env == "cloud" and not bucket:
            raise SettingsError("MLPLATFORM_ENV=cloud needs MLPLATFORM_BUCKET, the bucket that holds artifacts")
        return cls(
            env=env,
            home=Path(environ.get("MLPLATFORM_HOME", ".mlplatform")).expanduser().resolve(),
            spec_path=Path(environ.get("MLPLATFORM_SPEC") or default_spec_path()).expanduser().resolve(),
            executor=executor,
            bucket=bucket,
            prefix=environ.get("MLPLATFORM_PREFIX", "mlplatform").strip("/"),
        )

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def bentoml_home(self) -> Path:
        """BentoML's home (its model store and bentos): the model registry lives here."""
        return self.home / "bentoml"

    @property
    def bentoml_home(self) -> Path:
        """BentoML's home (its model store and bentos): the model registry lives here."""
        return self.home / "bentoml"

    @property
    def artifact_root(self) -> str:
        """Where asset values, reports and plots go: a local folder or an S3 URI."""
        if self.env == "cloud":
            return f"s3://{self.bucket}/{self.prefix}"
        return str(self.home / "artifacts")
