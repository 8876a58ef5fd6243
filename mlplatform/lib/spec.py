"""The project spec: one YAML file that names the problem and where its data comes from.

Only the spec's *shape* is checked here (fields, types, known values, well-formed URLs). Whether its
columns exist in the data, or its source is reachable, can only be known at ingestion.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlplatform.lib.automation.cron import check_cron

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
# What the evaluation reports (and a promotion floor may name): the optimisable metrics and a few more.
REPORTED_METRICS = {
    # precision, recall, f1 and average_precision: of the positive class, for two-class targets only
    "classification": (
        *CLASSIFICATION_METRICS,
        "precision_macro",
        "recall_macro",
        "precision",
        "recall",
        "f1",
        "average_precision",
    ),
    "regression": REGRESSION_METRICS,
}
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
DEFAULT_METRIC = {"classification": "f1_macro", "regression": "rmse"}

FILE_FORMATS = ("csv", "parquet", "json")
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mariadb", "mssql", "oracle", "duckdb")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SpecError(ValueError):
    """A spec that cannot be used; the message names the file, the field and the value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Problem(_Strict):
    task: Literal["classification", "regression"]
    target: str = Field(min_length=1)
    metric: str | None = None
    id_column: str | None = None
    time_column: str | None = None
    drop_columns: tuple[str, ...] = ()
    # For a two-class target: the label that precision, recall, f1, average precision, ROC AUC and the Brier
    # score treat as positive. Default: the alphabetically second label ("yes" of no/yes, "1" of 0/1).
    positive_class: str | None = None

    @field_validator("positive_class", mode="before")
    @classmethod
    def _label_as_text(cls, label: object) -> object:
        # Labels are compared as text (cleaning makes class labels text): true -> "True", 1 -> "1".
        return None if label is None else str(label)

    @model_validator(mode="after")
    def _metric_suits_task(self) -> Problem:
        allowed = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        if self.metric is not None and self.metric not in allowed:
            raise ValueError(
                f"metric {self.metric!r} does not suit task {self.task!r}; choose one of {', '.join(allowed)}"
            )
        roles = {"id_column": self.id_column, "time_column": self.time_column}
        for field, column in roles.items():
            if column is not None and column == self.target:
                raise ValueError(f"{field} {column!r} is also the target")
        if self.target in self.drop_columns:
            raise ValueError(f"drop_columns lists the target {self.target!r}")
        if self.positive_class is not None and self.task != "classification":
            raise ValueError(f"positive_class {self.positive_class!r} is for classification, not {self.task}")
        return self

    @property
    def primary_metric(self) -> str:
        return self.metric or DEFAULT_METRIC[self.task]

    @property
    def excluded_columns(self) -> tuple[str, ...]:
        """Columns that are never model inputs."""
        return tuple(c for c in (self.target, self.id_column, self.time_column) if c is not None)


class Source(_Strict):
    """Where the data comes from, told apart by the URI's scheme.

    - a local path (relative to the spec file) or ``file://``: a CSV, Parquet or JSON file, or a folder of them
    - ``s3://bucket/key``: the same, in object storage (a key or a prefix); credentials, region and endpoint
      come from the usual AWS environment (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ...), and
      ``AWS_ENDPOINT_URL_S3`` points at an S3-compatible store (MinIO, moto) instead of AWS
    - ``http(s)://``: an endpoint answering CSV or JSON
    - a SQLAlchemy URL (``sqlite:///x.db``, ``postgresql+psycopg2://...``) together with ``query``
    ``${VAR}`` in ``uri`` or ``headers`` is read from the environment at ingestion, so secrets stay out of the file.
    """

    uri: str = Field(min_length=1)
    format: Literal["auto", "csv", "parquet", "json"] = "auto"
    # snapshot: the source holds the whole dataset, and each read replaces the last accepted one.
    # batches: each file in the folder or prefix is a batch, validated on its own before it joins the rest.
    # auto: batches for a folder or prefix, snapshot otherwise.
    mode: Literal["auto", "snapshot", "batches"] = "auto"
    encoding: str = "utf-8"
    query: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    json_records_path: str | None = None
    # Leave out row-index columns (an unnamed first column from R's write.csv or pandas' to_csv, see
    # mlplatform.lib.data.index_columns); false keeps every column as it arrived.
    drop_index_columns: bool = True

    @property
    def kind(self) -> Literal["file", "s3", "http", "sql"]:
        scheme = urlparse(self.uri).scheme.split("+")[0].lower()
        if scheme in ("", "file") or re.fullmatch(r"[a-z]", scheme):  # a Windows drive letter is a path
            return "file"
        if scheme == "s3":
            return "s3"
        if scheme in ("http", "https"):
            return "http"
        return "sql"

    @field_validator("uri")
    @classmethod
    def _well_formed(cls, uri: str) -> str:
        parsed = urlparse(uri)
        scheme = parsed.scheme.split("+")[0].lower()
        if scheme in ("", "file") or re.fullmatch(r"[a-z]", scheme):
            return uri
        if scheme == "s3":
            if not parsed.netloc:
                raise ValueError(f"S3 URI {uri!r} has no bucket; write s3://bucket/key")
            return uri
        if scheme in ("http", "https"):
            if not parsed.netloc:
                raise ValueError(f"URL {uri!r} has no host")
            return uri
        if scheme in SQL_SCHEMES:
            return uri
        if scheme == "postgres":
            raise ValueError(f"{uri!r}: SQLAlchemy 2 no longer reads postgres://; write postgresql://")
        raise ValueError(
            f"unknown scheme {parsed.scheme!r} in {uri!r}: use a file path, s3://, http(s):// "
            f"or a SQLAlchemy URL ({', '.join(SQL_SCHEMES)})"
        )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        import codecs

        try:
            return codecs.lookup(encoding).name
        except LookupError:
            raise ValueError(f"unknown text encoding {encoding!r}") from None

    @model_validator(mode="after")
    def _query_only_for_sql(self) -> Source:
        if self.kind == "sql" and not self.query:
            raise ValueError(f"a SQL source ({self.uri!r}) needs a query")
        if self.kind != "sql" and self.query:
            hint = ""
            if _ENV_REFERENCE.match(self.uri):
                # The kind is decided when the spec is checked, before the environment is read.
                hint = "; write the scheme in the spec, e.g. postgresql://${DB_USER}:${DB_PASSWORD}@host/db"
            raise ValueError(f"query is only for SQL sources, not {self.kind} ({self.uri!r}){hint}")
        return self


class Split(_Strict):
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = 42


Severity = Literal["error", "warn"]


class ColumnContract(_Strict):
    """What the user promises about one column; every batch is held to it."""

    type: Literal["number", "category", "boolean"] | None = None
    required: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[str | int | float | bool, ...] | None = None
    max_null_fraction: float | None = Field(default=None, ge=0.0, le=1.0)
    # The share of a batch's rows that must meet min/max and allowed: what the user states is strict unless
    # they say otherwise.
    mostly: float = Field(default=1.0, gt=0.0, le=1.0)
    severity: Severity = "error"


class ProfileSettings(_Strict):
    """Expectations learned from the accepted data: ranges, category sets, null fractions, columns."""

    enabled: bool = True
    severity: Severity = "error"
    # The share of a batch's rows that must fall inside a learned range or value set: a range learned from
    # the rows seen so far is a guess, and a clean batch holds a few legitimate values just outside it.
    mostly: float = Field(default=0.99, gt=0.0, le=1.0)
    range_margin: float = Field(default=0.1, ge=0.0)  # widen a learned range by this share of its span
    null_margin: float = Field(default=0.05, ge=0.0, le=1.0)  # allowed rise of a column's null fraction
    max_categories: int = Field(default=50, ge=1)  # text columns with more distinct values get no value set


class UserExpectation(_Strict):
    """Any Great Expectations expectation, by its snake_case name, e.g. expect_column_values_to_be_between."""

    expectation: str = Field(pattern=r"^expect_[a-z0-9_]+$")
    kwargs: dict[str, object] = Field(default_factory=dict)
    severity: Severity = "error"


class Quality(_Strict):
    columns: dict[str, ColumnContract] = Field(default_factory=dict)
    profile: ProfileSettings = ProfileSettings()
    expectations: tuple[UserExpectation, ...] = ()
    max_duplicate_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    duplicates_severity: Severity = "error"
    # Rows without a target are dropped by cleaning; None lets any share of a batch be unlabeled, a number
    # rejects a batch with a larger share.
    max_unlabeled_fraction: float | None = Field(default=None, ge=0.0, le=1.0)

    def unlabeled_limit_stated_once(self, target: str) -> None:
        contract = self.columns.get(target)
        if self.max_unlabeled_fraction is not None and contract is not None and contract.max_null_fraction is not None:
            raise ValueError(
                f"quality.max_unlabeled_fraction ({self.max_unlabeled_fraction}) and "
                f"quality.columns.{target}.max_null_fraction ({contract.max_null_fraction}) both limit the rows "
                f"without a target {target!r}; state it once"
            )


class SearchRange(_Strict):
    """One hyperparameter's search range: numbers between low and high (log scale optional), or choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[str | int | float | bool | None, ...] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SearchRange:
        if self.choices is None and (self.low is None or self.high is None or self.low > self.high):
            raise ValueError("give either choices, or low <= high")
        if self.log and self.low is not None and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        return self


class Toleration(_Strict):
    """A Kubernetes toleration, as the pod spec writes it: lets the pod onto a tainted node (a GPU pool, say)."""

    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @model_validator(mode="after")
    def _value_only_when_equal(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError(f"operator Exists takes no value (got {self.value!r}); use operator Equal")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without a key must use operator Exists (it then tolerates every taint)")
        return self


def _as_quantity(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)  # YAML reads `cpu: 2` as a number
    kubernetes_quantity(text)
    return text


# A Kubernetes quantity as the spec may write it: cores as 2, "2" or "500m", memory as "4Gi" or "512Mi".
Quantity = Annotated[str | None, BeforeValidator(_as_quantity)]


class CandidatePod(_Strict):
    """Run this candidate's search in a pod of its own, launched through Dagster Pipes (``PipesK8sClient``), for a
    search that needs another image or a GPU node. The pod reads its inputs from, and writes its model to, the
    artifact store, so that store must be object storage the pod can reach (``MLPLATFORM_ENV=cloud``)."""

    image: str | None = None  # None: the platform's own image (MLPLATFORM_POD_IMAGE, else the run's image)
    cpu: Quantity = None  # requested: what the scheduler reserves for the search
    memory: Quantity = None  # requested, and the limit: a pod using more is killed, not the node
    gpu: int = Field(default=0, ge=0)  # GPUs, as the limit of ``gpu_resource`` (extended resources have no requests)
    gpu_resource: str = Field(default="nvidia.com/gpu", pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+$")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    service_account: str | None = None  # e.g. one bound to an IAM role that may read and write the bucket
    # Kubernetes Secrets whose keys become the pod's environment: how credentials reach it, never the spec.
    env_from_secrets: tuple[str, ...] = ()
    timeout_minutes: float = Field(default=24 * 60, gt=0)  # the pod is stopped and the step fails after this


class CandidateResources(_Strict):
    """What a candidate's step runs on. ``pod``: its search in a pod of its own, through Dagster Pipes; left out,
    the search runs in the step's own process, wherever the executor put it."""

    pod: CandidatePod | None = None


class Candidate(_Strict):
    """An estimator to try, by its name in the catalogue (mlplatform.lib.training.candidates), and how to tune it."""

    estimator: str
    params: dict[str, object] = Field(default_factory=dict)  # fixed, not searched
    search: dict[str, SearchRange] | None = None  # None: the catalogue's default space
    trials: int = Field(default=10, ge=1)
    seconds: float | None = Field(default=None, gt=0)  # a cap: stops the search before a fold, marked
    resources: CandidateResources = CandidateResources()


class StepResources(_Strict):
    """What each candidate search's pod asks Kubernetes for under MLPLATFORM_EXECUTOR=k8s (requested and its
    limit, so the search's threads match the cores it was given); ignored by the executors that run on this
    machine. Kubernetes quantities: cores as "2" or "500m", memory as "4Gi" or "512Mi"."""

    cpu: Quantity = None
    memory: Quantity = None


class Training(_Strict):
    # None: the catalogue's three defaults for the task (linear, random forest, gradient boosting)
    candidates: dict[str, Candidate] | None = None
    cv_folds: int = Field(default=3, ge=2)
    seed: int = 42
    # Each candidate search's pod under MLPLATFORM_EXECUTOR=k8s; None: the cluster's defaults.
    resources: StepResources | None = None

    @field_validator("candidates")
    @classmethod
    def _names_are_identifiers(cls, chosen: dict[str, Candidate] | None) -> dict[str, Candidate] | None:
        # each name becomes a Dagster step (and a pod): letters, digits and underscores only
        for name in chosen or {}:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,62}", name):
                raise ValueError(f"candidate name {name!r}: letters, digits and underscores, starting with a letter")
        if chosen is not None and not chosen:
            raise ValueError("name at least one candidate, or leave training.candidates out for the defaults")
        return chosen


class EvaluationSettings(_Strict):
    # Columns whose values each get their own holdout metrics (a fairness or coverage view), e.g. [island].
    slice_columns: tuple[str, ...] = ()
    max_slices: int = Field(default=20, ge=1)  # per column: the most frequent values; the rest are "(other)"


class PromotionSettings(_Strict):
    """When a challenger replaces the champion: it clears every floor, and beats the champion by ``margin`` in
    the primary metric on the holdout rows neither model trained on."""

    # metric -> the worst acceptable value: a minimum for higher-is-better metrics, a maximum for losses
    floors: dict[str, float] = Field(default_factory=dict)
    margin: float = Field(default=0.0, ge=0.0)


class Automation(_Strict):
    """What starts runs without a person (``mlplatform.defs.automation``). Each trigger exists in every code
    location, visible and switchable in the UI; these choose whether it starts on or off."""

    # The sensor on the source: a new or changed file in a folder / S3 prefix (or a changed snapshot) is ingested.
    new_data: bool = False
    # Retraining once new data was accepted, or when monitoring asks for it (drift, decay).
    retrain: bool = False
    # Refreshing the monitoring assets (drift, live performance) every monitoring.every_minutes.
    monitor: bool = False
    retrain_cron: str | None = None  # a cron schedule for retraining regardless of new data, e.g. "0 3 * * 1"
    timezone: str = "UTC"  # the schedule's IANA timezone
    # The least time between the starts of two automatic training runs; at most one runs and one waits.
    cooldown_minutes: float = Field(default=30.0, ge=0.0)
    sensor_seconds: int = Field(default=30, ge=5)  # how often the sensors look

    @field_validator("retrain_cron")
    @classmethod
    def _readable_cron(cls, cron: str | None) -> str | None:
        return None if cron is None else check_cron(cron)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {name!r}; use an IANA name such as Europe/Paris or UTC") from None
        return name


class DriftSettings(_Strict):
    """When the served inputs and predictions have drifted from what the champion was trained on. A feature
    drifts when its effect size passes its threshold *and* the shift is significant after controlling the false
    discovery rate across features (at 100,000 rows every shift is significant; at 50 rows none is)."""

    window_hours: float = Field(default=24.0, gt=0.0)  # the logged predictions each drift report compares
    min_rows: int = Field(default=200, ge=1)  # fewer rows in the window: no verdict
    psi: float = Field(default=0.2, gt=0.0)  # population stability index, numbers and categories
    ks: float = Field(default=0.1, gt=0.0, le=1.0)  # Kolmogorov-Smirnov distance D, numbers
    cramers_v: float = Field(default=0.1, gt=0.0, le=1.0)  # Cramér's V of the chi-square test, categories
    fdr: float = Field(default=0.05, gt=0.0, lt=1.0)  # Benjamini-Hochberg false discovery rate across features
    # Retraining is asked for when more than this share of the features drifted, or any feature named below.
    max_drifted_share: float = Field(default=0.3, ge=0.0, le=1.0)
    features: tuple[str, ...] = ()


class LabelSource(_Strict):
    """Where ground truth for served predictions lands: files with an id and the true target."""

    uri: str = Field(min_length=1)  # a folder or S3 prefix of CSV / Parquet / JSON files
    # The column joining a label to its prediction: problem.id_column when the requests carry it, else the
    # request_id the service answered with.
    id_column: str | None = None

    @field_validator("uri")
    @classmethod
    def _folder_or_prefix(cls, uri: str) -> str:
        scheme = urlparse(uri).scheme.lower()
        if scheme not in ("", "file", "s3") and not re.fullmatch(r"[a-z]", scheme):
            raise ValueError(f"labels land in a folder or an S3 prefix (s3://bucket/prefix/), not {uri!r}")
        return uri


class Freshness(_Strict):
    """How old the accepted data and the champion may get before the UI shows them stale and an alert goes out."""

    # At least a minute (1/60 of an hour): Dagster's freshness policies refuse shorter windows.
    accepted_data_hours: float | None = Field(default=None, ge=1 / 60)
    champion_hours: float | None = Field(default=None, ge=1 / 60)
    warn_fraction: float = Field(default=0.75, gt=0.0, le=1.0)  # warn once this share of the window has passed


class Monitoring(_Strict):
    drift: DriftSettings = DriftSettings()
    labels: LabelSource | None = None
    # How much worse the live primary metric may get than the champion's holdout metric, in the metric's
    # units (0.05 of f1_macro, 2.0 of rmse), before retraining and an alert; None: decay is reported only.
    max_decay: float | None = Field(default=None, ge=0.0)
    min_labelled: int = Field(default=50, ge=1)  # fewer labelled predictions: no live metric
    every_minutes: float = Field(default=60.0, gt=0.0)  # how often the monitoring assets are refreshed
    freshness: Freshness = Freshness()


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_QUANTITY_SCALE = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
_QUANTITY_SCALE["Ti"] = 2**40


def kubernetes_quantity(text: str) -> float:
    """A Kubernetes quantity ("250m", "1", "512Mi") as a number, to compare a request with its limit."""
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity such as 250m, 1, 512Mi or 1Gi")
    return float(match.group(1)) * _QUANTITY_SCALE[match.group(2) or ""]


class DeploymentSettings(_Strict):
    """How the champion runs on Kubernetes (``mlplatform.lib.deployment.kubernetes``): its pods' size and count.
    The defaults suit the bundled example: one BentoML worker per pod holding a small scikit-learn model."""

    replicas: int = Field(default=2, ge=1)  # at the first rollout; the autoscaler moves it between min and max
    min_replicas: int = Field(default=2, ge=1)  # two: one keeps serving while the other is replaced or evicted
    max_replicas: int = Field(default=4, ge=1)
    target_cpu_percent: int = Field(default=70, ge=1, le=100)  # of the CPU request, averaged over the pods
    cpu: str = "250m"  # requests: what the scheduler reserves
    memory: str = "512Mi"
    cpu_limit: str = "1"  # limits: a pod using more CPU is throttled, more memory is killed
    memory_limit: str = "1Gi"
    service_type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    node_port: int | None = Field(default=None, ge=30000, le=32767)  # NodePort only; None: the cluster picks one
    # The rollout the `kubernetes_deployment` asset watches, and undoes (back to the previous ReplicaSet) when the
    # new pods are not all ready within rollout_timeout_seconds (the Deployment's progressDeadlineSeconds too),
    # when a smoke prediction through the Service fails, or when more than max_error_rate of the requests it
    # sends through the Service over the first watch_seconds fail.
    rollout_timeout_seconds: int = Field(default=240, ge=10)
    watch_seconds: int = Field(default=20, ge=0)
    max_error_rate: float = Field(default=0.0, ge=0, lt=1)

    @field_validator("cpu", "memory", "cpu_limit", "memory_limit", mode="before")
    @classmethod
    def _quantity(cls, value: object) -> str:
        text = str(value)  # YAML reads `cpu: 1` as a number
        kubernetes_quantity(text)
        return text

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentSettings:
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(
                f"need min_replicas ({self.min_replicas}) <= replicas ({self.replicas}) <= max_replicas "
                f"({self.max_replicas})"
            )
        for request, limit in (("cpu", "cpu_limit"), ("memory", "memory_limit")):
            if kubernetes_quantity(getattr(self, request)) > kubernetes_quantity(getattr(self, limit)):
                raise ValueError(f"{request} {getattr(self, request)!r} is more than {limit} {getattr(self, limit)!r}")
        if self.node_port is not None and self.service_type != "NodePort":
            raise ValueError(f"node_port {self.node_port} needs service_type NodePort")
        return self


class ProjectSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    problem: Problem
    source: Source
    split: Split = Split()
    quality: Quality = Quality()
    training: Training = Training()
    evaluation: EvaluationSettings = EvaluationSettings()
    promotion: PromotionSettings = PromotionSettings()
    automation: Automation = Automation()
    monitoring: Monitoring = Monitoring()
    deployment: DeploymentSettings = DeploymentSettings()
    # Set by the loader, not written by users: relative paths in the spec are relative to its file.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _floors_suit_task(self) -> ProjectSpec:
        reported = REPORTED_METRICS[self.problem.task]
        for metric in self.promotion.floors:
            if metric not in reported:
                task, choices = self.problem.task, ", ".join(reported)
                raise ValueError(f"promotion.floors: {metric!r} is not a {task} metric; choose from {choices}")
        self.quality.unlabeled_limit_stated_once(self.problem.target)
        labels = self.monitoring.labels
        if labels is not None and labels.id_column not in (None, "request_id", self.problem.id_column):
            joinable = " or ".join(repr(c) for c in ("request_id", self.problem.id_column) if c)
            raise ValueError(
                f"monitoring.labels.id_column {labels.id_column!r}: labels join the prediction log by {joinable} "
                "(problem.id_column, when requests carry it)"
            )
        return self

    def resolve_path(self, path: str) -> Path:
        candidate = Path(path.removeprefix("file://")).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()


def expand_env(text: str, field: str) -> str:
    """Replace ``${VAR}`` with the environment's value; an unset variable is an error, not an empty string."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise SpecError(f"{field}: environment variable {name} is not set (referenced as ${{{name}}})")
        return os.environ[name]

    return _ENV_REFERENCE.sub(lookup, text)


def env_references(text: str) -> list[str]:
    """The names of the environment variables ``text`` refers to as ``${VAR}``."""
    return _ENV_REFERENCE.findall(text)


def _describe(error: dict) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{location}: required field is missing"
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown field (value {error['input']!r})"
    shown = error.get("input")
    if isinstance(shown, dict):
        return f"{location}: {message}"
    return f"{location}: {message} (got {shown!r})"


def parse_spec(document: object, origin: str, base_dir: Path) -> ProjectSpec:
    if not isinstance(document, dict):
        raise SpecError(f"{origin}: the spec must be a mapping of fields, got {type(document).__name__}")
    if "base_dir" in document:  # set by the loader below; a user's value would be silently overwritten
        raise SpecError(f"{origin}: invalid spec\n  base_dir: unknown field (value {document['base_dir']!r})")
    try:
        return ProjectSpec.model_validate({**document, "base_dir": base_dir})
    except ValidationError as exc:
        problems = "\n  ".join(_describe(error) for error in exc.errors())
        raise SpecError(f"{origin}: invalid spec\n  {problems}") from None


def load_spec(path: str | Path) -> ProjectSpec:
    """Read and check a spec file; raise SpecError naming the file, field and value on any problem."""
    spec_path = Path(path).expanduser().resolve()
    if not spec_path.is_file():
        raise SpecError(f"{spec_path}: spec file not found")
    try:
        document = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SpecError(f"{spec_path}: not valid YAML: {exc}") from None
    return parse_spec(document, str(spec_path), spec_path.parent)


def default_spec_path() -> Path:
    return Path(__file__).resolve().parent.parent / "examples" / "penguins.yaml"
