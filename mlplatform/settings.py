"""The one place that reads the environment. Everything else receives a Settings.

| variable | meaning | default |
|---|---|---|
| MLPLATFORM_ENV | ``local`` (files under MLPLATFORM_HOME) or ``cloud`` (S3) | local |
| MLPLATFORM_HOME | the folder that holds all local state | ./.mlplatform |
| BENTOML_HOME | BentoML's own: its model store (the registry) and bentos, one per process | $MLPLATFORM_HOME/bentoml |
| MLPLATFORM_SPEC | the project spec file | the bundled penguins example |
| MLPLATFORM_BUCKET | the bucket for artifacts when MLPLATFORM_ENV=cloud | (required there) |
| MLPLATFORM_PREFIX | the key prefix within that bucket | mlplatform |
| MLPLATFORM_S3_SSE | server-side encryption of every object written: ``AES256`` or ``aws:kms`` | AES256 |
| MLPLATFORM_S3_KMS_KEY_ID | the KMS key of ``aws:kms`` (the account's AWS-managed key when unset) | — |
| MLPLATFORM_EXECUTOR | ``in_process``, ``multiprocess`` or ``k8s`` (a pod per step, with K8sRunLauncher) | in_process |
| MLPLATFORM_DEPLOY | ``local`` (the champion served by ``bentoml serve``) or ``none`` | local; none in cloud |
| MLPLATFORM_SERVE_PORT | the local deployment's port on 127.0.0.1 (the Dagster UI has 3000) | 3001 |
| MLPLATFORM_REGISTRY | an image registry (host:port): adds the container image asset, which needs a Docker engine | — |
| MLPLATFORM_ALERT_WEBHOOK | where alerts are POSTed (a Slack incoming webhook or any JSON endpoint) | — (log only) |
| MLPLATFORM_UI_URL | the Dagster UI's address, for links to runs in alerts | http://127.0.0.1:3000 |
| MLPLATFORM_LOG_FORMAT | ``json``: the runs' JSON log lines go to stdout as well as to the file (containers) | text |
| MLPLATFORM_DAGSTER_CONFIG | a dagster.yaml for the instance (``deploy/dagster.yaml``: Postgres, S3) | the project's |

The prediction service (``bentos/predictor``) reads its own, in ``ServingSettings`` (a served bento imports it
in the bento's own folder, so relative paths would point there):

| variable | meaning | default |
|---|---|---|
| MLPLATFORM_API_TOKEN | the bearer token predictions require (a Kubernetes Secret in production) | (required) |
| MLPLATFORM_AUTH | ``token``, or ``off`` to serve predictions without a token (local experiments only) | token |
| MLPLATFORM_PREDICTION_LOG | the prediction log's folder; make it absolute | $MLPLATFORM_HOME/predictions |
| MLPLATFORM_MODEL_TAG | the model to serve when the service runs from source; a built bento pins its own | — |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mlplatform.lib.spec import default_spec_path

API_TOKEN = "MLPLATFORM_API_TOKEN"
Environment = Literal["local", "cloud"]
Executor = Literal["in_process", "multiprocess", "k8s"]
Deploy = Literal["local", "none"]
Auth = Literal["token", "off"]
LogFormat = Literal["text", "json"]
Encryption = Literal["AES256", "aws:kms"]


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
    deploy: Deploy = "none"
    serve_port: int = 3001
    image_registry: str | None = None
    api_token: str | None = field(default=None, repr=False)  # the local deployment's token, when given
    alert_webhook: str | None = field(default=None, repr=False)  # a Slack webhook URL is itself a secret
    ui_url: str = "http://127.0.0.1:3000"
    named_bentoml_home: Path | None = None  # BENTOML_HOME, when the environment sets it
    log_format: LogFormat = "text"
    s3_encryption: Encryption = "AES256"
    s3_kms_key_id: str | None = None
    dagster_config: Path | None = None  # MLPLATFORM_DAGSTER_CONFIG; None: the project's own dagster.yaml

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        *,
        home: str | Path | None = None,
        spec_path: str | Path | None = None,
    ) -> Settings:
        """The settings the environment gives; ``home`` and ``spec_path`` (a command's ``--home`` and ``--spec``)
        take the place of MLPLATFORM_HOME and MLPLATFORM_SPEC."""
        env = environ.get("MLPLATFORM_ENV", "local")
        if env not in ("local", "cloud"):
            raise SettingsError(f"MLPLATFORM_ENV={env!r}: use 'local' or 'cloud'")
        executor = environ.get("MLPLATFORM_EXECUTOR", "in_process")
        if executor not in ("in_process", "multiprocess", "k8s"):
            raise SettingsError(f"MLPLATFORM_EXECUTOR={executor!r}: use 'in_process', 'multiprocess' or 'k8s'")
        bucket = environ.get("MLPLATFORM_BUCKET") or None
        if env == "cloud" and not bucket:
            raise SettingsError("MLPLATFORM_ENV=cloud needs MLPLATFORM_BUCKET, the bucket that holds artifacts")
        deploy = environ.get("MLPLATFORM_DEPLOY") or ("local" if env == "local" else "none")
        if deploy not in ("local", "none"):
            raise SettingsError(f"MLPLATFORM_DEPLOY={deploy!r}: use 'local' or 'none'")
        port = environ.get("MLPLATFORM_SERVE_PORT", "3001")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"MLPLATFORM_SERVE_PORT={port!r}: use a TCP port number (1-65535)")
        log_format = environ.get("MLPLATFORM_LOG_FORMAT") or "text"
        if log_format not in ("text", "json"):
            raise SettingsError(f"MLPLATFORM_LOG_FORMAT={log_format!r}: use 'text' or 'json'")
        encryption = environ.get("MLPLATFORM_S3_SSE") or "AES256"
        if encryption not in ("AES256", "aws:kms"):
            raise SettingsError(f"MLPLATFORM_S3_SSE={encryption!r}: use 'AES256' or 'aws:kms'")
        kms_key_id = environ.get("MLPLATFORM_S3_KMS_KEY_ID") or None
        if kms_key_id and encryption != "aws:kms":
            raise SettingsError(
                f"MLPLATFORM_S3_KMS_KEY_ID is set but MLPLATFORM_S3_SSE={encryption!r}: a KMS key is used only with "
                "MLPLATFORM_S3_SSE=aws:kms"
            )
        dagster_config = environ.get("MLPLATFORM_DAGSTER_CONFIG") or None
        if dagster_config and not Path(dagster_config).expanduser().is_file():
            raise SettingsError(f"MLPLATFORM_DAGSTER_CONFIG={dagster_config!r}: no such file (name a dagster.yaml)")
        return cls(
            env=env,
            home=Path(home or environ.get("MLPLATFORM_HOME", ".mlplatform")).expanduser().resolve(),
            spec_path=Path(spec_path or environ.get("MLPLATFORM_SPEC") or default_spec_path()).expanduser().resolve(),
            executor=executor,
            bucket=bucket,
            prefix=environ.get("MLPLATFORM_PREFIX", "mlplatform").strip("/"),
            deploy=deploy,
            serve_port=int(port),
            image_registry=environ.get("MLPLATFORM_REGISTRY") or None,
            api_token=environ.get(API_TOKEN) or None,
            alert_webhook=environ.get("MLPLATFORM_ALERT_WEBHOOK") or None,
            ui_url=(environ.get("MLPLATFORM_UI_URL") or "http://127.0.0.1:3000").rstrip("/"),
            named_bentoml_home=bentoml_home_named_by(environ["BENTOML_HOME"]) if environ.get("BENTOML_HOME") else None,
            log_format=log_format,
            s3_encryption=encryption,
            s3_kms_key_id=kms_key_id,
            dagster_config=Path(dagster_config).expanduser().resolve() if dagster_config else None,
        )

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def bentoml_home(self) -> Path:
        """BentoML's home (its model store and bentos): the model registry lives here. BentoML's own BENTOML_HOME
        names it when the environment sets it, so that this process, its step processes and ``bentoml`` commands
        typed in the same shell all use one home."""
        return self.named_bentoml_home or self.home / "bentoml"

    @property
    def deployment_home(self) -> Path:
        """The local deployment's state, token and server logs."""
        return self.home / "deployment"

    @property
    def log_path(self) -> Path:
        """The structured log: one JSON line per run event and per alert (``mlplatform.lib.logs``)."""
        return self.home / "logs" / "mlplatform.jsonl"

    @property
    def prediction_log(self) -> Path:
        return self.home / "predictions"

    @property
    def artifact_root(self) -> str:
        """Where asset values, reports and plots go: a local folder or an S3 URI."""
        if self.env == "cloud":
            return f"s3://{self.bucket}/{self.prefix}"
        return str(self.home / "artifacts")

    @property
    def model_store_root(self) -> str | None:
        """Where model versions are kept beside this process's BentoML home, as exported archives any machine can
        import: the bucket in the cloud; None locally, where BentoML's home is the store."""
        if self.env == "cloud":
            return f"{self.artifact_root}/models"
        return None


def bentoml_home_named_by(value: str) -> Path:
    """The folder a BENTOML_HOME value names, read as BentoML reads it (``$VARIABLES`` and ``~`` expanded until
    nothing changes), made absolute."""
    while (expanded := os.path.expanduser(os.path.expandvars(value))) != value:
        value = expanded
    return Path(value).resolve()


@dataclass(frozen=True)
class ServingSettings:
    """The prediction service's environment. Reading it never fails for a missing token, because ``bentoml
    build`` imports the service where no token exists; the service refuses to start without one
    (``require_token``)."""

    api_token: str | None
    auth: Auth
    prediction_log: Path
    model_tag: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServingSettings:
        auth = environ.get("MLPLATFORM_AUTH", "token")
        if auth not in ("token", "off"):
            raise SettingsError(f"MLPLATFORM_AUTH={auth!r}: use 'token' (the default) or 'off'")
        home = Path(environ.get("MLPLATFORM_HOME", ".mlplatform")).expanduser()
        return cls(
            api_token=environ.get("MLPLATFORM_API_TOKEN") or None,
            auth=auth,
            prediction_log=Path(environ.get("MLPLATFORM_PREDICTION_LOG") or home / "predictions")
            .expanduser()
            .resolve(),
            model_tag=environ.get("MLPLATFORM_MODEL_TAG") or None,
        )

    def require_token(self) -> str | None:
        """The token predictions need, or None when MLPLATFORM_AUTH=off says to serve without one."""
        if self.auth == "off":
            return None
        if not self.api_token:
            raise SettingsError(
                "MLPLATFORM_API_TOKEN is not set: the service will not serve predictions without a token "
                "(set MLPLATFORM_AUTH=off to run without authentication on purpose)"
            )
        return self.api_token
