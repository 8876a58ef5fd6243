"""The prediction bento versus a bare FastAPI + uvicorn app serving the same model, same run, same client.

Both servers run on 127.0.0.1 at the same time, one worker process each, and answer with the same
``mlplatform.lib.serving.serving.ModelRunner`` (one feature-pipeline pass, then the estimator). One asyncio load
client (aiohttp) drives each scenario against one server, then the other: 1-row requests to /predict and
100-row requests to /predict_batch, each at 8 and 64 concurrent clients, for ``--seconds`` after a warm-up.
It prints throughput, p50/p99 latency, errors and the server's CPU time per request for each side, and the
ratios bento ÷ FastAPI.

    .venv/bin/python bench/serving.py                   # 10 s per scenario and side (~3 min)
    .venv/bin/python bench/serving.py --quick           # 3 s per scenario and side (~1.5 min)
    .venv/bin/python bench/serving.py --repeats 3 --workdir /tmp/bench-serving
    .venv/bin/python bench/serving.py --smoke           # 1 s per scenario and side (under a minute)

Exit status 3 when a target of issue #5 is not met (throughput >= 1.0x, p99 <= 1.5x, no error, per scenario).

README.md (section "serving.py") says what each side does and how to read the numbers.
"""

# No `from __future__ import annotations`: FastAPI reads the baseline endpoints' annotations, which name a
# request model built at run time inside baseline_app.
import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

from bench import common
from bench.common import PROJECT_ROOT, Target

SCENARIOS = [(1, 8), (1, 64), (100, 8), (100, 64)]  # (rows per request, concurrent clients)
SIDES = ("fastapi", "bento")
TOKEN = "bench-token"


def baseline_app(tag: str):
    """What a team writes without BentoML: FastAPI endpoints over the same request model and predictor,
    with plain ``def`` endpoints, which FastAPI runs on its thread pool, as its documentation advises for
    blocking work. No authentication, metrics or prediction log: the bento does that work on top."""
    from fastapi import Body, FastAPI

    from mlplatform.lib.serving import serving
    from mlplatform.lib.serving.prediction_log import RequestIds

    runner = serving.load_model(common.model_folder(tag), tag)
    Row = serving.request_model(runner.schema)  # noqa: N806 (a class)
    request_ids = RequestIds()  # the same answers as the bento's, request id included
    app = FastAPI(title="baseline")

    @app.post("/predict")
    def predict(row: Row) -> serving.Prediction:  # type: ignore[valid-type]
        (answer,) = runner.predict_rows([row.model_dump(by_alias=True)])
        return serving.Prediction(model_tag=tag, request_id=request_ids.next(), **answer)

    @app.post("/predict_batch")
    def predict_batch(rows: Annotated[list[Row], Body(embed=True)]) -> serving.BatchPrediction:  # type: ignore[valid-type]
        answers = runner.predict_rows([row.model_dump(by_alias=True) for row in rows])
        return serving.BatchPrediction(model_tag=tag, request_id=request_ids.next(), predictions=answers)

    @app.get("/readyz")
    def readyz() -> str:
        return "ok"

    return app


def _baseline_child(args: argparse.Namespace) -> None:
    import uvicorn

    app = baseline_app(args.tag)
    uvicorn.run(app, host="127.0.0.1", port=args.port, workers=1, log_level="warning", access_log=False)


@dataclass(frozen=True)
class Server:
    side: str
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its worker processes so far."""
        import psutil

        root = psutil.Process(self.pid)
        return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


@dataclass
class Measurement:
    side: str
    rows: int
    concurrency: int
    seconds: float
    requests: int
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float
    rows_per_model_call: float | None = None

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


async def drive(url: str, payloads: list[bytes], concurrency: int, seconds: float) -> tuple[list[float], Counter]:
    """``concurrency`` clients, each sending its next request as soon as the last is answered, for ``seconds``."""
    import aiohttp

    latencies: list[float] = []
    errors: Counter = Counter()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        deadline = time.perf_counter() + seconds

        async def client(index: int) -> None:
            sent = index
            while time.perf_counter() < deadline:
                body = payloads[sent % len(payloads)]
                sent += concurrency
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors[type(exc).__name__] += 1
                    continue
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[f"HTTP {status}"] += 1

        await asyncio.gather(*(client(index) for index in range(concurrency)))
    return latencies, errors


def measure(server: Server, payloads: list[bytes], rows: int, concurrency: int, args) -> Measurement:
    url = server.url + ("/predict" if rows == 1 else "/predict_batch")
    asyncio.run(drive(url, payloads, concurrency, args.warmup))
    calls_before = model_calls(server.url) if server.side == "bento" else None
    cpu_before, started = server.cpu_seconds(), time.perf_counter()
    latencies, errors = asyncio.run(drive(url, payloads, concurrency, args.seconds))
    elapsed, cpu = time.perf_counter() - started, server.cpu_seconds() - cpu_before
    per_call = None
    if calls_before is not None:
        rows_after, calls_after = model_calls(server.url)
        per_call = (rows_after - calls_before[0]) / max(1.0, calls_after - calls_before[1])
    latencies_ms = sorted(1000 * value for value in latencies)
    return Measurement(
        side=server.side,
        rows=rows,
        concurrency=concurrency,
        seconds=elapsed,
        requests=len(latencies),
        errors=dict(errors),
        p50_ms=percentile(latencies_ms, 50),
        p99_ms=percentile(latencies_ms, 99),
        cpu_ms_per_request=1000 * cpu / max(1, len(latencies)),
        rows_per_model_call=per_call,
    )


def percentile(ordered: list[float], percent: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]


def model_calls(base_url: str) -> tuple[float, float]:
    """(rows, calls) of the bento's model calls so far, from its Prometheus histogram."""
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for kind in values:
            if line.startswith(f"mlplatform_model_call_rows_{kind}"):
                values[kind] += float(line.rsplit(" ", 1)[1])
    return values["sum"], values["count"]


def payloads_for(schema: dict, holdout, count: int = 64) -> dict[int, list[bytes]]:
    """Request bodies made once, before timing: single rows and 100-row batches drawn from the held-out rows."""
    from mlplatform.lib.serving.serving import request_rows

    rows = request_rows(holdout, schema)
    singles = [json.dumps(rows[i % len(rows)]).encode() for i in range(count)]
    batches = [json.dumps({"rows": [rows[(i * 7 + j) % len(rows)] for j in range(100)]}).encode() for i in range(count)]
    return {1: singles, 100: batches}


def check_same_answers(servers: list[Server], body: bytes) -> None:
    import httpx

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    answers = []
    for server in servers:
        response = httpx.post(server.url + "/predict_batch", content=body, headers=headers, timeout=60)
        response.raise_for_status()
        answers.append([p["prediction"] for p in response.json()["predictions"]])
    if any(answer != answers[0] for answer in answers):
        raise SystemExit("the servers disagree on the same rows: the comparison would be meaningless")


def report(results: list[Measurement]) -> list[dict]:
    header = f"{'scenario':<18}{'side':<9}{'req/s':>8}{'rows/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    print(f"\n{header}{'CPU ms/req':>12}{'rows/call':>11}")
    ratios = []
    for rows, concurrency in SCENARIOS:
        best = {}
        for side in SIDES:
            runs = [m for m in results if (m.side, m.rows, m.concurrency) == (side, rows, concurrency)]
            best[side] = max(runs, key=lambda m: m.throughput)
            errors = sum(m.error_count for m in runs)
            m = best[side]
            per_call = "-" if m.rows_per_model_call is None else f"{m.rows_per_model_call:.1f}"
            print(
                f"{f'{rows} row(s) x {concurrency}':<18}{side:<9}{m.throughput:>8.1f}{m.throughput * rows:>9.0f}"
                f"{m.p50_ms:>9.1f}{m.p99_ms:>9.1f}{errors:>8}{m.cpu_ms_per_request:>12.2f}{per_call:>11}"
            )
        bento, fastapi = best["bento"], best["fastapi"]
        bento_errors = sum(
            m.error_count for m in results if (m.side, m.rows, m.concurrency) == ("bento", rows, concurrency)
        )
        ratios.append(
            {
                "rows": rows,
                "concurrency": concurrency,
                "throughput": bento.throughput / fastapi.throughput,
                "p50": bento.p50_ms / fastapi.p50_ms,
                "p99": bento.p99_ms / fastapi.p99_ms,
                "cpu_per_request": bento.cpu_ms_per_request / fastapi.cpu_ms_per_request,
                "bento_errors": bento_errors,
            }
        )
    print("\nbento ÷ FastAPI, best run of each")
    for ratio in ratios:
        common.ratio_line(
            f"bento/fastapi throughput, {ratio['rows']} row(s) x {ratio['concurrency']}",
            ratio["throughput"],
            f"p50 {ratio['p50']:.2f}x, p99 {ratio['p99']:.2f}x, CPU/request {ratio['cpu_per_request']:.2f}x, "
            f"bento errors {ratio['bento_errors']}",
        )
    return ratios


def targets(ratios: list[dict]) -> list[Target]:
    """Issue #5's targets, for every scenario."""
    chosen = []
    for ratio in ratios:
        scenario = f"{ratio['rows']} row(s) x {ratio['concurrency']}"
        chosen += [
            Target(f"throughput bento ÷ FastAPI, {scenario}", ratio["throughput"], ">=", 1.0),
            Target(f"p99 bento ÷ FastAPI, {scenario}", ratio["p99"], "<=", 1.5),
            Target(f"bento errors, {scenario}", ratio["bento_errors"], "<=", 0),
        ]
    return chosen


def start_servers(workdir: Path, service_dir: Path, stack: ExitStack) -> tuple[list[Server], dict]:
    """The test model in a fresh store, its bento built and served, and the FastAPI app beside it; each
    server is stopped when ``stack`` closes, whatever happens after it started."""
    from mlplatform.resources import bentos
    from mlplatform_tests.servers import free_port
    from mlplatform_tests.serving.models import save_penguins_model

    home = workdir / "bentoml"
    os.environ["BENTOML_HOME"] = str(home)  # before BentoML's first use here: nothing of ~/bentoml is touched
    saved = save_penguins_model(home)
    bento_tag = bentos.build(saved.tag, bentoml_home=home, service_dir=service_dir)
    print(f"model {saved.tag}, bento {bento_tag}; {common.machine()}")
    environment = {
        "MLPLATFORM_API_TOKEN": TOKEN,
        "MLPLATFORM_PREDICTION_LOG": str(workdir / "predictions"),
        "MLPLATFORM_SERVE_WORKERS": "1",  # one process a side: the stacks compared, not the process counts
    }
    served = bentos.serve(
        bento_tag, port=free_port(), bentoml_home=home, log_path=workdir / "bento.log", environment=environment
    )
    stack.callback(served.stop)
    port = free_port()
    # BENTOML_HOME in its environment: the child finds the model's folder through BentoML's own API
    baseline_server = common.start_server(
        [sys.executable, __file__, "--baseline-child", "--tag", saved.tag, "--port", str(port)],
        port=port,
        log=workdir / "fastapi.log",
        env=bentos.bentoml_environment(home),
        stack=stack,
    )
    for process in (served, baseline_server):
        process.wait_ready()
    servers = [
        Server("fastapi", baseline_server.url, baseline_server.process.pid),
        Server("bento", served.url, served.process.pid),
    ]
    return servers, payloads_for(saved.schema, saved.holdout)


def run(args: argparse.Namespace, workdir: Path) -> int:
    results: list[Measurement] = []
    with ExitStack() as stack:
        servers, payloads = start_servers(workdir, args.service_dir, stack)
        check_same_answers(servers, payloads[100][0])
        for repeat in range(args.repeats):
            for rows, concurrency in SCENARIOS:
                for server in servers if repeat % 2 == 0 else servers[::-1]:
                    m = measure(server, payloads[rows], rows, concurrency, args)
                    print(
                        f"  {m.side:<8}{rows:>4} row(s) x {concurrency:<3}{m.throughput:8.1f} req/s"
                        f"  p50 {m.p50_ms:7.1f} ms  p99 {m.p99_ms:7.1f} ms  CPU {m.cpu_ms_per_request:6.2f} ms/req"
                        f"  errors {m.errors or 0}",
                        flush=True,
                    )
                    results.append(m)
    ratios = report(results)
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other work on the machine skews both sides)")
    document = {
        "args": {key: str(value) for key, value in vars(args).items()},
        "cpus": os.cpu_count(),
        "measurements": [{**asdict(m), "throughput": m.throughput} for m in results],
        "ratios": ratios,
    }
    print(f"saved {common.save_results(args.results, 'serving', document)}")
    return common.verdict(targets(ratios), smoke=args.smoke)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per scenario and side")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--repeats", type=int, default=1, help="measurements per scenario and side (best is shown)")
    parser.add_argument("--quick", action="store_true", help="3 s per scenario and side, 1 s warm-up")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the model store and the servers' logs here")
    parser.add_argument("--service-dir", type=Path, default=PROJECT_ROOT / "bentos" / "predictor", help="the bento")
    common.add_standard_arguments(parser, "1 s per scenario and side after 0.5 s of warm-up")
    parser.add_argument("--baseline-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_child:
        _baseline_child(args)
        return 0
    if args.quick:
        args.seconds, args.warmup = 3.0, 1.0
    if args.smoke:
        args.seconds, args.warmup, args.repeats = 1.0, 0.5, 1
    with common.workdir(args.workdir, "bench-serving-") as workdir:
        return run(args, workdir)


if __name__ == "__main__":
    raise SystemExit(main())
