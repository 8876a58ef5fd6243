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
| MLPLATFORM_DEPLOY | ``local`` (bentoml serve), ``k8s`` (needs MLPLATFORM_REGISTRY), ``none`` | local (cloud: none) |
| MLPLATFORM_K8S_NAMESPACE | with ``k8s``: the namespace the champion is deployed to (it must exist) | default |
| MLPLATFORM_KUBE_CONTEXT | with ``k8s``: the kubeconfig context to use | the kubeconfig's current one |
| KUBECONFIG | with ``k8s``: the cluster's kubeconfig (inside a pod: the pod's own ServiceAccount) | ~/.kube/config |
| MLPLATFORM_K8S_SERVICE_URL | with ``k8s``: where this process reaches the Service (a port-forward) | its ClusterIP |
| MLPLATFORM_SERVE_PORT | the local deployment's port on 127.0.0.1 (the Dagster UI has 3000) | 3001 |
| MLPLATFORM_REGISTRY | an image registry (host:port): adds the container image asset, which needs a Docker engine | — |
| MLPLATFORM_ALERT_WEBHOOK | where alerts are POSTed (a Slack incoming webhook or any JSON endpoint) | — (log only) |
| MLPLATFORM_UI_URL | the Dagster UI's address, for links to runs in alerts | http://127.0.0.1:3000 |
| MLPLATFORM_LOG_FORMAT | ``json``: the runs' JSON log lines go to stdout as well as to the file (containers) | text |
| MLPLATFORM_DAGSTER_CONFIG | a dagster.yaml for the instance (``deploy/dagster.yaml``: Postgres, S3) | the project's |
| MLPLATFORM_POD_IMAGE | the image of a candidate's own pod (``resources.pod``) if none named | DAGSTER_CURRENT_IMAGE |
| MLPLATFORM_POD_NAMESPACE | the Kubernetes namespace of those pods | the run's own in a cluster, else default |

Those pods get the object-storage settings of the process that launches them (MLPLATFORM_S3_SSE,
MLPLATFORM_S3_KMS_KEY_ID, and AWS_REGION, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3 when set),
never its credentials: those come from the pod's service account (an IAM role) or the Secrets the spec names.

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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mlplatform.lib.spec import default_spec_path

API_TOKEN = "MLPLATFORM_API_TOKEN"
Environment = Literal["local", "cloud"]
Executor = Literal["in_process", "multiprocess", "k8s"]
Deploy = Literal["local", "k8s", "none"]
Auth = Literal["token", "off"]
LogFormat = Literal["text", "json"]
Encryption = Literal["AES256", "aws:kms"]
# Where S3 is and how to reach it, but no credential: what a candidate's pod is given of this process's environment.
FORWARDED_TO_PODS = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


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
    k8s_namespace: str = "default"
    kube_context: str | None = None
    kubeconfig: str | None = None  # KUBECONFIG; None: ~/.kube/config, or in a pod its ServiceAccount
    k8s_service_url: str | None = None  # None: the Service's ClusterIP (from a pod, or a host on the pod network)
    pod_image: str | None = None  # MLPLATFORM_POD_IMAGE, else DAGSTER_CURRENT_IMAGE
    pod_namespace: str | None = None  # MLPLATFORM_POD_NAMESPACE; None: Dagster Pipes finds the run's own
    aws_environment: tuple[tuple[str, str], ...] = ()  # FORWARDED_TO_PODS, those set, as (name, value)

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
        if deploy not in ("local", "k8s", "none"):
            raise SettingsError(f"MLPLATFORM_DEPLOY={deploy!r}: use 'local', 'k8s' or 'none'")
        if deploy == "k8s" and not environ.get("MLPLATFORM_REGISTRY"):
            raise SettingsError(
                "MLPLATFORM_DEPLOY=k8s needs MLPLATFORM_REGISTRY, the image registry the cluster pulls the champion's "
                "image from"
            )
        namespace = environ.get("MLPLATFORM_K8S_NAMESPACE") or "default"
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
            raise SettingsError(
                f"MLPLATFORM_K8S_NAMESPACE={namespace!r}: not a namespace name (lower case, digits, '-')"
            )
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
            k8s_namespace=namespace,
            kube_context=environ.get("MLPLATFORM_KUBE_CONTEXT") or None,
            kubeconfig=environ.get("KUBECONFIG") or None,
            k8s_service_url=(environ.get("MLPLATFORM_K8S_SERVICE_URL") or "").rstrip("/") or None,
            pod_image=environ.get("MLPLATFORM_POD_IMAGE") or environ.get("DAGSTER_CURRENT_IMAGE") or None,
            pod_namespace=environ.get("MLPLATFORM_POD_NAMESPACE") or None,
            aws_environment=tuple((name, environ[name]) for name in FORWARDED_TO_PODS if environ.get(name)),
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
    def s3_endpoint_url(self) -> str | None:
        """The S3 API the environment names (AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL): MinIO, moto; None: AWS."""
        named = dict(self.aws_environment)
        return named.get("AWS_ENDPOINT_URL_S3") or named.get("AWS_ENDPOINT_URL")

    @property
    def s3_region(self) -> str | None:
        named = dict(self.aws_environment)
        return named.get("AWS_REGION") or named.get("AWS_DEFAULT_REGION")

    @property
    def pod_environment(self) -> dict[str, str]:
        """What a candidate's pod is given of this process's environment: where S3 is, and how to encrypt."""
        environment = {
            **dict(self.aws_environment),
            "MLPLATFORM_ENV": self.env,
            "MLPLATFORM_S3_SSE": self.s3_encryption,
        }
        if self.s3_kms_key_id:
            environment["MLPLATFORM_S3_KMS_KEY_ID"] = self.s3_kms_key_id
        if self.bucket:
            environment["MLPLATFORM_BUCKET"] = self.bucket
        return environment

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
    # rows waiting for the model beyond which a request is refused with 503 (lib/serving/batching.py)
    max_queued_rows: int = 20_000
    # seconds a prediction's body may take to arrive before the request is refused with 408 (lib/serving/guard.py)
    body_seconds: float = 10.0
    # seconds a request's head (request line and headers) may take to arrive before it is refused with 408
    # (lib/serving/connections.py)
    header_seconds: float = 10.0
    # worker processes of the server, each with its own copy of the model: two where there are two cores, so
    # that a worker's crash leaves one answering while the process manager starts it again
    workers: int = field(default_factory=lambda: default_workers())

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
            max_queued_rows=_positive(environ, "MLPLATFORM_MAX_QUEUED_ROWS", cls.max_queued_rows, int),
            body_seconds=_positive(environ, "MLPLATFORM_BODY_SECONDS", cls.body_seconds, float),
            header_seconds=_positive(environ, "MLPLATFORM_HEADER_SECONDS", cls.header_seconds, float),
            workers=_positive(environ, "MLPLATFORM_SERVE_WORKERS", default_workers(), int),
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


def _positive(environ: Mapping[str, str], name: str, default, kind: type):
    """A positive number of ``kind`` from the environment, ``default`` when unset; a clear error otherwise."""
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not value > 0 or value != value or value == float("inf"):
        raise SettingsError(f"{name}={raw!r}: use a positive {kind.__name__}")
    return value


def default_workers() -> int:
    """Two serving workers where the process may use two cores (its affinity and cgroup quota), else one."""
    from mlplatform.lib.training.threads import usable_cores  # here: the training package imports scikit-learn

    return min(2, usable_cores())
