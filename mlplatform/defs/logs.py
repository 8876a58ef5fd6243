"""The runs' structured log: every event and message of a run as one JSON line (``mlplatform.lib.logs``), with
its run id, job, step, asset and model tag, appended to ``<home>/logs/mlplatform.jsonl`` and, with
MLPLATFORM_LOG_FORMAT=json, printed on stdout for a container's log collector."""

from __future__ import annotations

import logging

import dagster as dg

from mlplatform.lib.logs import JsonFormatter, json_lines_logger
from mlplatform.settings import Settings

JSON_LOGGER = "json"
# Asset metadata that names a model version: the registry's assets call it "tag", the deployment "model_tag".
_TAG_METADATA = {"challenger_model": "tag", "champion_model": "tag"}


class _RunFormatter(JsonFormatter):
    """Turns Dagster's ``dagster_meta`` into the line's fields. The model tag is known from the first
    materialization that names one (the challenger stored, the champion promoted, the bento built) in this
    process: a step of the multiprocess executor knows only its own."""

    def __init__(self, step_assets: dict[str, str]) -> None:
        super().__init__()
        self.step_assets = step_assets
        self.model_tag: str | None = None

    def message(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        return meta.get("orig_message") or record.getMessage()

    def fields(self, record: logging.LogRecord) -> dict:
        meta = getattr(record, "dagster_meta", None) or {}
        event, step = meta.get("dagster_event"), meta.get("step_key")
        self.model_tag = _event_model_tag(event) or self.model_tag
        return {
            "run_id": meta.get("run_id"),
            "job": meta.get("job_name"),
            "step": step,
            "asset": (_event_asset(event) if event is not None else None)
            or (self.step_assets.get(step_node(step)) if step else None),
            "model_tag": self.model_tag,
            "event": event.event_type_value if event is not None else None,
        }


def step_node(step_key: str) -> str:
    """The top-level node of a step: ``candidate_models.tune_candidate[linear]`` runs in ``candidate_models``."""
    return step_key.split(".", 1)[0].split("[", 1)[0]


def _event_asset(event) -> str | None:
    key = event.asset_key or getattr(event.event_specific_data, "asset_key", None)
    return key.to_user_string() if key is not None else None


def _event_model_tag(event) -> str | None:
    if event is None or not event.is_step_materialization:
        return None
    return model_tag_in(event.step_materialization_data.materialization)


def model_tag_in(materialization: dg.AssetMaterialization) -> str | None:
    """The model version an asset's materialization names, if it names one."""
    name = _TAG_METADATA.get(materialization.asset_key.to_user_string(), "model_tag")
    value = materialization.metadata.get(name)
    return str(value.value) if value is not None else None


def _step_assets(job_def: dg.JobDefinition | None) -> dict[str, str]:
    """Which assets each top-level node of the job computes (or checks), for lines that name no asset."""
    if job_def is None:
        return {}
    layer = job_def.asset_layer
    found: dict[str, set[str]] = {}
    for key in [*layer.selected_asset_keys, *layer.asset_graph.asset_check_keys]:
        try:
            node = layer.get_op_output_handle(key).node_handle
        except Exception:  # a key of the graph this job does not execute
            continue
        asset = key.asset_key if isinstance(key, dg.AssetCheckKey) else key
        found.setdefault(node.path[0], set()).add(asset.to_user_string())
    return {node: ", ".join(sorted(assets)) for node, assets in found.items()}


def json_logger(settings: Settings) -> dg.LoggerDefinition:
    """The logger every job of the platform starts with (``loggers.json`` in their default run config)."""

    @dg.logger(
        config_schema={"log_level": dg.Field(str, default_value="DEBUG", description="The least level written.")},
        description=f"One JSON line per event: to {settings.log_path}"
        + (", and to stdout (MLPLATFORM_LOG_FORMAT=json)." if settings.log_format == "json" else "."),
    )
    def json_lines(init_context: dg.InitLoggerContext) -> logging.Logger:
        return json_lines_logger(
            "mlplatform.run",
            settings.log_path,
            stdout=settings.log_format == "json",
            level=init_context.logger_config["log_level"],
            formatter=_RunFormatter(_step_assets(init_context.job_def)),
        )

    return json_lines
