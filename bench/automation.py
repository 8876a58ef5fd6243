"""P4 (issue #12): from a batch landing to the new champion answering on the local endpoint, with nothing done by
hand, against the same steps started by hand with `mlplatform run`, in the same run.

Two homes start alike: the bundled penguins, shuffled (seed 0), split into a first batch of ``--first-rows``
rows and a second of the rest; each home has its own landing folder holding the first batch, trained on and
served by `mlplatform run` (untimed), each on its own port. Then the second batch lands in both (moved into
the folder in one rename, as files should land):

- automation: `mlplatform dev` (webserver and daemon) is already running on the first home with the spec's
  automation on (sensors every 5 s, no cooldown); the clock runs from the landing until the endpoint answers
  a prediction with a model tag other than the first champion's;
- baseline: `mlplatform run` on the second home, timed from its start until it exits (it validates the batch,
  trains, gates, builds the bento and replaces the server, waiting for it to answer, as the graph does).

Both must end with a new champion of the same holdout metrics. The parts of each come from its instance: run
creation (the sensor's tick), launch, the steps. README.md (section "automation.py") keeps the results.

    .venv/bin/python bench/automation.py              # the bundled example's training budget
    .venv/bin/python bench/automation.py --smoke      # one trial of one candidate

Exit status 3 when the automatic path takes longer than issue #12's 60 s (full size only).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from bench import common
from bench.common import Target

TARGET_SECONDS = 60.0  # issue #12, P4
SENSOR_SECONDS = 5
SMOKE_TRAINING = {
    "cv_folds": 3,
    "seed": 42,
    "candidates": {"linear": {"estimator": "logistic_regression", "trials": 1}},
}


@dataclass
class Side:
    name: str
    home: Path
    landing: Path
    spec: Path
    port: int

    def environment(self) -> dict[str, str]:
        extra = {
            "MLPLATFORM_DEPLOY": "local",
            "MLPLATFORM_SERVE_PORT": str(self.port),
            "MLPLATFORM_SPEC": str(self.spec),
        }
        return common.child_environment(extra)

    def settings(self):
        from mlplatform.settings import Settings

        return Settings.from_env({"MLPLATFORM_HOME": str(self.home), **self.environment()})


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def land(folder: Path, name: str, frame) -> float:
    """Write the batch beside the folder and move it in with one rename: a sensor never sees half a file."""
    staging = folder.parent / f".{name}.partial"
    frame.to_csv(staging, index=False)
    os.replace(staging, folder / name)
    return time.time()


def prepare(workdir: Path, args: argparse.Namespace) -> tuple[list[Side], object]:
    """Both homes trained and served on the first batch; returns them and the second batch."""
    from mlplatform.lib.spec import default_spec_path

    rows = __import__("pandas").read_csv(default_spec_path().parent / "penguins.csv")
    rows = rows.sample(frac=1.0, random_state=0).reset_index(drop=True)
    first, second = rows.iloc[: args.first_rows], rows.iloc[args.first_rows :]
    sides = []
    for name, automatic in (("automation", True), ("baseline", False)):
        folder = workdir / name
        landing = folder / "landing"
        landing.mkdir(parents=True)
        spec = common.write_spec(folder, landing, SMOKE_TRAINING if args.smoke else None)
        document = yaml.safe_load(spec.read_text())
        # A profile learned from a small first batch would reject the larger second one; the contract still checks.
        document["quality"]["profile"]["enabled"] = False
        document["automation"] = {
            "new_data": automatic,
            "retrain": automatic,
            "cooldown_minutes": 0,
            "sensor_seconds": SENSOR_SECONDS,
        }
        spec.write_text(yaml.safe_dump(document, sort_keys=False))
        side = Side(name, folder / "home", landing, spec, free_port())
        land(landing, "batch_1.csv", first)
        command = [sys.executable, "-m", "mlplatform.cli", "run", "--home", str(side.home)]
        print(f"  {name}: the first batch ({len(first)} rows), trained and served by `mlplatform run`", flush=True)
        common.run_child(command, side.environment(), folder / "setup.log")
        sides.append(side)
    return sides, second


def answering_tag(side: Side, row: dict) -> str | None:
    """The model tag the side's endpoint answers ``row`` with, or None while it does not answer."""
    running = side_deployment(side).current()
    if running is None:
        return None
    token = Path(side.settings().deployment_home / "token").read_text().strip()
    try:
        answer = requests.post(
            f"{running.url}/predict", json=row, headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
    except requests.RequestException:
        return None
    return answer.json()["model_tag"] if answer.ok else None


def example_row(side: Side) -> dict:
    """The row the local deployment checked its server with, as its metadata shows it."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(side.settings().dagster_home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("local_deployment"))
        return json.loads(event.asset_materialization.metadata["example_row"].value)


def side_deployment(side: Side):
    from mlplatform.resources import LocalServing

    return LocalServing.for_settings(side.settings()).deployment()


def start_dev(side: Side, log: Path) -> subprocess.Popen:
    port = free_port()
    command = [sys.executable, "-m", "mlplatform.cli", "dev", "--home", str(side.home), "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            env=side.environment(),
            cwd=side.home.parent,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_default_signals,
        )
    process.url = f"http://127.0.0.1:{port}"
    return process


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop_dev(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGINT, 90), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(process.pid):
                time.sleep(0.2)
            if not _group_alive(process.pid):
                return
        except subprocess.TimeoutExpired:
            continue


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


TICKS = """query Ticks($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  ... on Sensor { sensorState { ticks(limit: 1) { timestamp } } } } }"""


def wait_for_sensor(process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Until the daemon has evaluated the new-data sensor once: the loop is live."""
    selector = {"repositoryLocationName": "mlplatform", "repositoryName": "__repository__", "sensorName": "new_data"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlplatform dev exited with {process.returncode}; see {log}")
        try:
            body = requests.post(
                f"{process.url}/graphql", json={"query": TICKS, "variables": {"selector": selector}}, timeout=10
            )
            sensor = body.json()["data"]["sensorOrError"]
            if sensor.get("sensorState", {}).get("ticks"):
                return
        except (requests.RequestException, KeyError, TypeError, ValueError):
            pass
        time.sleep(1)
    raise RuntimeError(f"the new_data sensor did not tick within {timeout:.0f} s; see {log}")


def wait_for_new_champion(side: Side, old_tag: str, row: dict, timeout: float) -> tuple[float, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tag = answering_tag(side, row)
        if tag is not None and tag != old_tag:
            return time.time(), tag
        time.sleep(0.25)
    raise RuntimeError(f"{side.name}: no new champion answered within {timeout:.0f} s")


def parts(side: Side, landed: float, answered: float) -> dict[str, float]:
    """The seconds between the moments the instance recorded: run creations, starts, step ends."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(side.settings().dagster_home)) as instance:

        def latest(job: str):
            (record,) = instance.get_run_records(dg.RunsFilter(job_name=job), limit=1)
            if record.create_timestamp.timestamp() < landed:
                raise RuntimeError(f"{side.name}: no {job} run after the batch landed")
            return record

        ingest, train = latest("ingest_batch"), latest("train_and_evaluate")
        steps = {stats.step_key: stats for stats in instance.get_run_step_stats(train.dagster_run.run_id)}

    def ended(step: str) -> float:
        return steps[step].end_time

    moments = [
        ("until the ingest run is created (sensor tick / CLI start)", ingest.create_timestamp.timestamp()),
        ("ingest run launch (queue, process start)", ingest.start_time),
        ("ingest + checks", ingest.end_time),
        ("until the training run is created (sensor tick)", train.create_timestamp.timestamp()),
        ("training run launch (queue, process start)", train.start_time),
        ("training + evaluation + registry", ended("challenger_model")),
        ("gate + champion", ended("champion_model")),
        ("bento build", ended("prediction_bento")),
        ("server replacement", ended("local_deployment")),
        ("until the endpoint answers", answered),
    ]
    found, previous = {}, landed
    for what, moment in moments:
        found[what] = moment - previous
        previous = moment
    return found


def holdout_metrics(side: Side) -> dict:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(side.settings().dagster_home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("evaluation_report"))
        return dict(event.asset_materialization.metadata["metrics"].value)


def run(args: argparse.Namespace, workdir: Path) -> int:
    print(f"machine: {common.machine()}", flush=True)
    sides, second = prepare(workdir, args)
    automatic, manual = sides
    row = example_row(manual)
    first_tags = {side.name: answering_tag(side, row) for side in sides}
    if None in first_tags.values():
        raise RuntimeError(f"the first champions do not both answer: {first_tags}")
    results: dict[str, dict] = {}
    try:
        print("  baseline: the second batch lands, then `mlplatform run`", flush=True)
        landed = land(manual.landing, "batch_2.csv", second)
        command = [sys.executable, "-m", "mlplatform.cli", "run", "--home", str(manual.home)]
        common.run_child(command, manual.environment(), workdir / "baseline.log")
        answered, tag = wait_for_new_champion(manual, first_tags["baseline"], row, timeout=60)
        results["baseline"] = {"seconds": answered - landed, "tag": tag, "parts": parts(manual, landed, answered)}

        print("  automation: `mlplatform dev` is up with the sensors on; the second batch lands", flush=True)
        dev_log = workdir / "dev.log"
        dev = start_dev(automatic, dev_log)
        try:
            wait_for_sensor(dev, dev_log)
            landed = land(automatic.landing, "batch_2.csv", second)
            answered, tag = wait_for_new_champion(automatic, first_tags["automation"], row, timeout=600)
        finally:
            stop_dev(dev)
        results["automation"] = {"seconds": answered - landed, "tag": tag, "parts": parts(automatic, landed, answered)}
    finally:
        for side in sides:
            side_deployment(side).stop()

    print(f"\n{'part (seconds)':<62}{'automation':>11}{'baseline':>10}")
    for what in results["automation"]["parts"]:
        print(f"  {what:<60}{results['automation']['parts'][what]:>11.1f}{results['baseline']['parts'][what]:>10.1f}")
    print(f"  {'total: landed to the new champion answering':<60}", end="")
    print(f"{results['automation']['seconds']:>11.1f}{results['baseline']['seconds']:>10.1f}")
    metrics = {side.name: holdout_metrics(side) for side in sides}
    different = []
    if metrics["automation"] != metrics["baseline"]:
        different.append(f"holdout metrics differ: {json.dumps(metrics, default=str)}")
    common.ratio_line(
        "automation ÷ mlplatform run, landed to answering",
        results["automation"]["seconds"] / results["baseline"]["seconds"],
        f"{results['automation']['seconds']:.1f} s vs {results['baseline']['seconds']:.1f} s",
    )
    document = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": common.machine(), "results": results}
    document["metrics"] = metrics
    print(f"saved {common.save_results(args.results, 'automation', document)}")
    target = Target("landed to new champion answering, seconds", results["automation"]["seconds"], "<=", TARGET_SECONDS)
    return common.verdict([target], smoke=args.smoke, different_work=different)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first-rows", type=int, default=24, help="rows in the first batch; the rest land second")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the homes and logs here")
    common.add_standard_arguments(parser, "one trial of one candidate")
    args = parser.parse_args(argv)
    with common.workdir(args.workdir, "bench-automation-") as workdir:
        return run(args, workdir)


if __name__ == "__main__":
    raise SystemExit(main())
