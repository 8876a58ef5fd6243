"""The prediction service: one registry model version behind a typed, authenticated HTTP API.

    bentoml serve service:Predictor --arg model_tag=penguins:<version>    # from source, in this folder
    bentoml build --arg model_tag=penguins:<version>                       # a bento pinned to that version

The tag is a bento argument: ``bentoml build`` records it in the bento and every ``bentoml serve`` of that
bento restores it, so a bento always serves the version it was built for (MLPLATFORM_MODEL_TAG stands in
when the service runs from source without ``--arg``). Request and response models come from the model's
schema.json, and predictions from ``mlplatform.lib.serving.serving``, the same feature pipeline training fitted.
"""

import gc
import logging
import time
from typing import Annotated

import bentoml
import prometheus_client
from pydantic import Field
from starlette.responses import JSONResponse

from mlplatform.lib.logs import json_to_stdout
from mlplatform.lib.serving import auth, batching, connections, guard, serving
from mlplatform.lib.serving.prediction_log import PredictionLog
from mlplatform.settings import ServingSettings

logger = logging.getLogger("mlplatform.predictor")
logger.setLevel(logging.INFO)  # BentoML's server logging passes only warnings from loggers not its own

SETTINGS = ServingSettings.from_env()
MODEL_TAG = serving.pinned_tag(getattr(bentoml.use_arguments(), "model_tag", None) or SETTINGS.model_tag)
MODEL = bentoml.models.BentoModel(MODEL_TAG)
if MODEL.stored is None:
    raise serving.ServingError(f"model {MODEL_TAG} is not in the BentoML model store (BENTOML_HOME)")
SCHEMA = serving.read_schema(MODEL.stored.path)
json_to_stdout(logger, model_tag=MODEL_TAG)  # one JSON line per event, as the runs write theirs (lib/logs.py)
Row = serving.request_model(SCHEMA)
API_PATHS = ("/predict", "/predict_batch")
# The largest prediction body: MAX_REQUEST_ROWS rows of a wide schema fit (a penguins row is ~150 bytes)
MAX_BODY_BYTES = 8 * 1024 * 1024
# Seconds a request may wait for its prediction once its body is in: the micro-batcher's queue is bounded
# (MLPLATFORM_MAX_QUEUED_ROWS), so a full queue drains in about a second, and 10,000 rows take well under one
MODEL_SECONDS = 5.0
# A rejected request is one INFO line without its values, not BentoML's ERROR with a traceback quoting them
logging.getLogger(guard.BENTOML_REQUEST_LOGGER).addFilter(guard.OneLineRefusals())

# prometheus_client directly (bentoml.metrics is deprecated): `bentoml serve` starts its workers with
# PROMETHEUS_MULTIPROC_DIR set, which guard.own_metrics_folder makes this server's own (not every server's of
# the BentoML home), so these write to the files /metrics reads (guard.RequestMetrics).
guard.own_metrics_folder()
PREDICTED_ROWS = prometheus_client.Counter(
    name="mlplatform_predictions",
    documentation="Rows predicted, by model version and endpoint",
    labelnames=["model_tag", "endpoint"],
)
LATENCY = prometheus_client.Histogram(
    name="mlplatform_prediction_latency_seconds",
    documentation="Time from a validated request to its answer, batching wait included",
    labelnames=["model_tag", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_ROWS = prometheus_client.Histogram(
    name="mlplatform_model_call_rows",
    documentation="Rows per model call: how many requests' rows micro-batching put together",
    labelnames=["model_tag"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
)
# BentoML's own request metrics are off (they label each distinct path a client sends: unbounded series);
# these label the service's paths and "other" (lib/serving/guard.py).
HTTP_REQUESTS = prometheus_client.Counter(
    name="mlplatform_http_requests",
    documentation="HTTP requests answered, by endpoint (a path the service does not serve is 'other') and status",
    labelnames=["model_tag", "endpoint", "status"],
)
HTTP_LATENCY = prometheus_client.Histogram(
    name="mlplatform_http_request_duration_seconds",
    documentation="Time from a request's arrival to its answer, by endpoint",
    labelnames=["model_tag", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
REFUSED_REQUESTS = prometheus_client.Counter(
    name="mlplatform_refused_requests",
    documentation="Valid requests refused: 'overloaded' (503, the micro-batcher's queue is full) or "
    "'unanswerable' (422, an input far outside the training range or a non-finite model output)",
    labelnames=["model_tag", "reason"],
)
LOG_DROPPED_ROWS = prometheus_client.Counter(
    name="mlplatform_prediction_log_dropped_rows",
    documentation="Predicted rows the prediction log could not keep (queue full or write failed)",
    labelnames=["model_tag"],
)


@bentoml.service(
    # Two processes where there are two cores (MLPLATFORM_SERVE_WORKERS): each micro-batches its own requests,
    # and when one dies (kill -9, out of memory) the other answers while the process manager restarts it.
    workers=SETTINGS.workers,
    # A request not answered within its body's deadline plus MODEL_SECONDS gets BentoML's 504. Kept short on
    # purpose: BentoML 1.4's timeout middleware schedules a timer per request that is never cancelled, and each
    # holds its request's context (tracing span, futures) until it fires. At 60 s, 1,000 requests a second kept
    # ~60,000 of them alive: +130 MB and 300-450 ms garbage-collection pauses (bench/README.md).
    traffic={"timeout": SETTINGS.body_seconds + MODEL_SECONDS},
    # An access log line costs as much of the worker's CPU as a micro-batched prediction (bench/README.md,
    # "What made the difference"); /metrics counts requests, the prediction log records each one.
    logging={"access": {"enabled": False}},
    # BentoML's request metrics label every path a client invents; guard.RequestMetrics serves /metrics instead
    metrics={"enabled": False},
)
class Predictor:
    """Predictions from one pinned model version. POST /predict takes one row, POST /predict_batch
    ``{"rows": [...]}``; both need ``Authorization: Bearer <token>``. /livez, /readyz, /metrics and the docs
    are open.

    The batch body is an object rather than a bare list: BentoML validates a bare-list body in Python after
    rebuilding its JSON schema on every request (~10 ms for 100 rows), an object in pydantic's JSON parser."""

    model = MODEL  # a BentoModel class attribute: `bentoml build` puts exactly this version in the bento

    @bentoml.on_deployment
    def refuse_to_start_without_a_token() -> None:
        """Runs once in the `bentoml serve` process, before any worker starts: without a token the server exits
        with the reason and a non-zero status, instead of starting workers that fail and restart in a loop."""
        SETTINGS.require_token()

    def __init__(self) -> None:
        SETTINGS.require_token()  # refuse to start rather than serve predictions to anyone
        self.tag = MODEL_TAG
        self.runner = serving.load_model(self.model.path, MODEL_TAG)
        self.ranges = serving.InputRanges.of(serving.read_reference(self.model.path), SCHEMA)
        self.batcher = batching.MicroBatcher(
            self.runner.predict_rows,
            max_queued_rows=SETTINGS.max_queued_rows,
            on_batch=BATCH_ROWS.labels(MODEL_TAG).observe,
        )
        self.log = PredictionLog(
            SETTINGS.prediction_log, schema=SCHEMA, model_tag=MODEL_TAG, on_drop=LOG_DROPPED_ROWS.labels(MODEL_TAG).inc
        )
        # The server accepts connections (and /readyz answers) only once this returns; a first prediction
        # here pays the pipeline's one-time costs (~3x a later call), so that no client's first request does.
        self.runner.predict_rows([dict.fromkeys(self.runner.column_names)])
        logger.info(
            "serving %s; prediction log in %s; %s",
            MODEL_TAG,
            SETTINGS.prediction_log,
            "bearer token required" if SETTINGS.auth == "token" else "AUTHENTICATION OFF (MLPLATFORM_AUTH=off)",
        )

    @bentoml.api
    async def predict(self, row: Row, /) -> serving.Prediction:  # type: ignore[valid-type]
        """Predict one row: each column of the model's input, null where unknown. The answer's request_id is
        the prediction's in the log, what its label is joined to."""
        request_id = self.log.request_ids.next()
        try:
            (answer,) = await self._answer([row.model_dump(by_alias=True)], "predict", request_id)
        except Refused as refused:
            return refused.response(self.tag, "/predict", location=lambda index, column: [column])
        return serving.Prediction(model_tag=self.tag, request_id=request_id, **answer)

    @bentoml.api
    async def predict_batch(
        self,
        rows: Annotated[list[Row], Field(max_length=serving.MAX_REQUEST_ROWS)],  # type: ignore[valid-type]
    ) -> serving.BatchPrediction:
        """Predict a list of rows, sent as {"rows": [...]}; the answers come in the same order. Labels are joined
        to a row by the answer's request_id and the row's position (request_row, from 0)."""
        request_id = self.log.request_ids.next()
        try:
            answers = await self._answer([row.model_dump(by_alias=True) for row in rows], "predict_batch", request_id)
        except Refused as refused:
            return refused.response(self.tag, "/predict_batch", location=lambda index, column: ["rows", index, column])
        return serving.BatchPrediction(model_tag=self.tag, request_id=request_id, predictions=answers)

    async def _answer(self, rows: list[dict], endpoint: str, request_id: str) -> list[serving.RowPrediction]:
        """The rows' answers, or ``Refused``: an input far outside the training range or a non-finite answer
        (422, and nothing logged as a prediction), or a full queue (503)."""
        started = time.perf_counter()
        if far := self.ranges.far_outside(rows):
            raise Refused.unanswerable(far, "far_outside_training_range")
        try:
            answers = await self.batcher(rows)
        except batching.Overloaded as overloaded:
            raise Refused(503, "overloaded", reason="overloaded", detail=str(overloaded)) from None
        if bad := serving.non_finite(answers):
            columns = [name for name in self.runner.column_names if any(rows[i][name] is not None for i in bad)]
            raise Refused.unanswerable([(i, name) for i in bad for name in columns], "non_finite_output")
        seconds = time.perf_counter() - started
        PREDICTED_ROWS.labels(model_tag=self.tag, endpoint=endpoint).inc(len(rows))
        LATENCY.labels(model_tag=self.tag, endpoint=endpoint).observe(seconds)
        self.log.append(rows, answers, endpoint=endpoint, latency_ms=seconds * 1000, request_id=request_id)
        return answers

    @bentoml.on_startup
    def freeze_startup_objects(self) -> None:
        """Move everything loaded so far (BentoML, pandas, scikit-learn, the model) out of the garbage
        collector's sight. Requests allocate many short-lived dicts, which trigger full collections, and each
        would walk those hundreds of thousands of objects while requests wait: that was the slowest 1% of
        answers (bench/README.md, "What made the difference")."""
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    def close(self) -> None:
        """Answer nothing more and write the prediction log's last rows."""
        self.batcher.close()
        self.log.close()


class Refused(Exception):
    """A valid request the service will not answer with a prediction, and the JSON error answer it gets: 422
    lists the inputs at fault as pydantic's errors do (loc, type, msg: never the value), 503 says when to retry."""

    REASONS = {
        "far_outside_training_range": f"more than {serving.FAR_OUTSIDE_SPANS:g} training ranges beyond the values "
        "the model was trained on",
        "non_finite_output": "the model's answer for this row is not a finite number (NaN or infinity)",
    }

    def __init__(self, status: int, error: str, *, reason: str, detail: str = "", cells=(), kind: str = "") -> None:
        super().__init__(error)
        self.status, self.error, self.reason, self.detail = status, error, reason, detail
        self.cells, self.kind = list(cells), kind

    @classmethod
    def unanswerable(cls, cells: list[tuple[int, str]], kind: str) -> "Refused":
        return cls(422, "unanswerable input", reason="unanswerable", cells=cells, kind=kind)

    def response(self, tag: str, path: str, *, location) -> JSONResponse:
        REFUSED_REQUESTS.labels(model_tag=tag, reason=self.reason).inc()
        detail = self.detail
        if self.cells:
            detail = [
                {"loc": location(index, column), "type": self.kind, "msg": self.REASONS[self.kind]}
                for index, column in self.cells[:100]
            ]
        where = ", ".join(".".join(map(str, entry["loc"])) for entry in detail[:10]) if self.cells else detail
        logger.info("refused POST %s: %s %s: %s", path, self.status, self.error, where)
        headers = {"Retry-After": "1"} if self.status == 503 else None
        return JSONResponse({"error": self.error, "detail": detail}, status_code=self.status, headers=headers)


def count_request(endpoint: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(model_tag=MODEL_TAG, endpoint=endpoint, status=str(status)).inc()
    HTTP_LATENCY.labels(model_tag=MODEL_TAG, endpoint=endpoint).observe(seconds)


# Before any middleware, the worker's HTTP connections: a head that is too slow (408) or too large (431) is
# refused before it is parsed in full, and Upgrade requests are answered as plain HTTP. The head is incomplete,
# so such a request counts as endpoint "other".
connections.install(
    head_seconds=SETTINGS.header_seconds,
    logger=logger,
    on_refusal=lambda status, seconds: count_request(guard.OTHER_PATHS, status, seconds),
)

# Outermost first: every request is counted (with a bounded endpoint label), then the token, then the body rules
Predictor.add_asgi_middleware(
    guard.RequestMetrics,
    known_paths={*API_PATHS, *auth.OPEN_PATHS},
    observe=count_request,
    logger=logger,
)
Predictor.add_asgi_middleware(auth.BearerTokenAuth, token=SETTINGS.api_token, required=SETTINGS.auth == "token")
Predictor.add_asgi_middleware(
    guard.JsonBodies,
    paths=API_PATHS,
    max_body_bytes=MAX_BODY_BYTES,
    body_seconds=SETTINGS.body_seconds,
    logger=logger,
)
