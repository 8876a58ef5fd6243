"""The real Dagster UI stack for slow tests: ``mlplatform dev`` in its own session, and its GraphQL API.

``dagster dev`` rather than ``dagster-webserver`` plus ``dagster-daemon run``: the webserver and the daemon
would each start a code server (two imports of pandas, scikit-learn and GX on a 2-core machine), while
``dagster dev`` shares one between them, stops its children itself (a shutdown pipe to each, then a kill
after 60 s) and keeps the whole tree in one process group that a single signal reaches. Starting it
through ``mlplatform dev`` prepares DAGSTER_HOME exactly as a developer's shell would.

Why the servers "ignore SIGTERM": a process started in the background of a non-interactive shell
inherits SIGINT as ignored, Python then leaves it ignored, and Dagster maps SIGTERM onto SIGINT's handler,
so both end up ignored in every process of the tree. ``dagster_dev`` restores the default SIGINT and
SIGTERM in the child before it starts, whatever the test runner inherited.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import requests

from mlplatform_tests.servers import free_port

LOCATION = "mlplatform"
# The job the UI's "Materialize all" launches: Dagster's implicit job over every asset of a repository.
IMPLICIT_ASSET_JOB = "__ASSET_JOB"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


class ServerError(RuntimeError):
    """The Dagster stack did not start, answer or stop as it should."""


@dataclass(frozen=True)
class Process:
    pid: int
    parent: int
    group: int
    session: int
    state: str
    command: str

    def __str__(self) -> str:
        return f"{self.pid} [{self.state}] {self.command[:160]}"


def processes() -> dict[int, Process]:
    """Every process on the machine, read from /proc (Linux): parent, group, session and state."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # it ended while being read
            continue
        # The command name in parentheses may hold spaces and parentheses: the fields start after the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        found[pid] = Process(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0], command)
    return found


def tree(root: int, table: Mapping[int, Process] | None = None) -> dict[int, Process]:
    """The live (not zombie) processes of ``root``'s session and process group, and its descendants."""
    table = processes() if table is None else table
    children: dict[int, list[int]] = {}
    for process in table.values():
        children.setdefault(process.parent, []).append(process.pid)
    members = {pid for pid, process in table.items() if root in (process.group, process.session)}
    pending = [root]
    while pending:
        pid = pending.pop()
        members.add(pid)
        pending.extend(child for child in children.get(pid, []) if child not in members)
    return {pid: table[pid] for pid in members if pid in table and table[pid].state != "Z"}


@dataclass
class Shutdown:
    """How the stack stopped, for a test to assert on."""

    signal_name: str = ""
    seconds: float = 0.0
    exit_code: int | None = None
    killed: list[str] = field(default_factory=list)
    left_running: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.exit_code == 0 and not self.killed and not self.left_running


@dataclass
class DagsterServers:
    """A running ``mlplatform dev``: where it answers, its home, its log, and (after the block) how it stopped."""

    url: str
    home: Path
    log_path: Path
    process: subprocess.Popen
    shutdown: Shutdown = field(default_factory=Shutdown)
    local_deployment: object = None  # the LocalDeployment its runs serve from, when the test set one up

    def graphql(self, query: str, timeout: float = 60, **variables: object) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=timeout)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise ServerError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def dagster_dev(
    home: Path,
    *,
    port: int | None = None,
    environment: Mapping[str, str] | None = None,
    startup_timeout: float = 300,
    shutdown_timeout: float = 90,
    stop_signal: signal.Signals = signal.SIGINT,
) -> Iterator[DagsterServers]:
    """Run ``mlplatform dev --home HOME`` (webserver, daemon and one code server) until the block ends.

    The stack gets its own session, so one signal reaches every process in it, including the run
    workers it starts. On exit: ``stop_signal`` to the group (SIGINT by default, Ctrl-C in a terminal;
    SIGTERM, what a supervisor sends, takes the same path in Dagster), a wait of ``shutdown_timeout``
    seconds, then SIGKILL to whatever is left. Raises ``ServerError`` unless the stack stopped by itself
    with exit code 0 and nothing of it is left. Temporary files (sockets, the generated workspace) go
    beside ``HOME``, not in /tmp.
    """
    port = port or free_port()
    home.mkdir(parents=True, exist_ok=True)
    scratch = home.parent / f"{home.name}-tmp"
    scratch.mkdir(exist_ok=True)
    log_path = home.parent / f"{home.name}-dagster-dev.log"
    # As a user starts it: its models under HOME, not in this test session's BENTOML_HOME.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("MLPLATFORM_", "DAGSTER_", "BENTOML_HOME"))}
    env = {
        **inherited,
        "TMPDIR": str(scratch),
        "PYTHONUNBUFFERED": "1",
        "MLPLATFORM_DEPLOY": "none",
        **(environment or {}),
    }
    command = [sys.executable, "-m", "mlplatform.cli", "dev", "--home", str(home), "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=home.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Runs in the child before exec; it imports nothing and takes no lock (preexec_fn's hazard with threads).
            preexec_fn=_default_interrupt_signals,
        )
    servers = DagsterServers(url=f"http://127.0.0.1:{port}", home=home, log_path=log_path, process=process)
    try:
        _wait_for_webserver(servers, startup_timeout)
        yield servers
    finally:
        servers.shutdown = stop(process, timeout=shutdown_timeout, sig=stop_signal)
    # Reached only when the block succeeded: a failure inside it is the error to show, not how it stopped.
    if not servers.shutdown.clean:
        raise ServerError(
            f"dagster dev did not stop cleanly after {servers.shutdown.signal_name} (exit code "
            f"{servers.shutdown.exit_code}): killed {servers.shutdown.killed}, "
            f"still running {servers.shutdown.left_running}\n{servers.log_tail()}"
        )


def _default_interrupt_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop(process: subprocess.Popen, *, timeout: float, sig: signal.Signals = signal.SIGINT) -> Shutdown:
    """Signal the process group of ``process`` (a session leader), wait, kill what is left, report."""
    report = Shutdown(signal_name=sig.name)
    started = time.monotonic()
    watched = tree(process.pid)  # taken before signalling: a process that leaves the group is still watched
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    survivors = _wait_until_gone(process, watched, timeout)
    if survivors:
        report.killed = [str(survivor) for survivor in survivors.values()]
        for pid in survivors:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        report.left_running = [str(survivor) for survivor in _wait_until_gone(process, watched, 10).values()]
    try:
        report.exit_code = process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        report.left_running.append(f"{process.pid} (the dagster dev process itself)")
    report.seconds = time.monotonic() - started
    return report


def _wait_until_gone(process: subprocess.Popen, watched: Mapping[int, Process], timeout: float) -> dict[int, Process]:
    """What is still alive of the process's tree, and of the processes watched, after up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        process.poll()  # reaps the leader: a zombie is not running, but only its parent clears it
        table = processes()
        alive = tree(process.pid, table)
        # A watched pid counts while it is the same process (same command line), not a reused pid.
        for pid, before in watched.items():
            current = table.get(pid)
            if current is not None and current.state != "Z" and current.command == before.command:
                alive[pid] = current
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.2)


def _wait_for_webserver(servers: DagsterServers, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if servers.process.poll() is not None:
            raise ServerError(f"dagster dev exited with {servers.process.returncode}:\n{servers.log_tail()}")
        try:
            if requests.get(f"{servers.url}/server_info", timeout=5).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise ServerError(f"the webserver did not answer at {servers.url} within {timeout:.0f} s:\n{servers.log_tail()}")


WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on PythonError { message }
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message stack } }
      }
    }
  }
}
"""


def wait_for_code_location(servers: DagsterServers, name: str = LOCATION, timeout: float = 300) -> None:
    """Until the code location has loaded its definitions; its import error, if any, fails at once."""
    deadline = time.monotonic() + timeout
    status = "not listed"
    while time.monotonic() < deadline:
        workspace = servers.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        if workspace["__typename"] != "Workspace":
            raise ServerError(f"workspace failed to load: {workspace}")
        entry = next((e for e in workspace["locationEntries"] if e["name"] == name), None)
        if entry is not None:
            status = entry["loadStatus"]
            loaded = entry["locationOrLoadError"]
            if loaded and loaded["__typename"] == "PythonError":
                raise ServerError(f"code location {name} failed to load: {loaded['message']}\n{loaded['stack']}")
            if status == "LOADED" and loaded and loaded["__typename"] == "RepositoryLocation":
                return
        time.sleep(1)
    raise ServerError(f"code location {name} still {status} after {timeout:.0f} s:\n{servers.log_tail()}")


ASSETS_TO_LAUNCH_QUERY = """
{
  assetNodes {
    assetKey { path }
    isExecutable
    repository { name location { name } }
    assetChecksOrError { __typename ... on AssetChecks { checks { name jobNames } } }
  }
}
"""

LAUNCH_RUN_MUTATION = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def launch_materialize_all(
    servers: DagsterServers, location: str = LOCATION, tags: Mapping[str, str] | None = None
) -> str:
    """Launch what the asset graph's "Materialize all" button launches: the implicit asset job over
    every executable asset of the location, with their checks, and no run config. Returns the run id."""
    nodes = [
        node
        for node in servers.graphql(ASSETS_TO_LAUNCH_QUERY)["assetNodes"]
        if node["isExecutable"] and node["repository"]["location"]["name"] == location
    ]
    if not nodes:
        raise ServerError(f"code location {location} has no executable assets")
    checks = [
        {"name": check["name"], "assetKey": {"path": node["assetKey"]["path"]}}
        for node in nodes
        if node["assetChecksOrError"]["__typename"] == "AssetChecks"
        for check in node["assetChecksOrError"]["checks"]
        if not check["jobNames"] or IMPLICIT_ASSET_JOB in check["jobNames"]
    ]
    params = {
        "mode": "default",
        "runConfigData": "{}",
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": nodes[0]["repository"]["name"],
            "jobName": IMPLICIT_ASSET_JOB,
            "assetSelection": [{"path": node["assetKey"]["path"]} for node in nodes],
            "assetCheckSelection": checks,
        },
    }
    result = servers.graphql(LAUNCH_RUN_MUTATION, executionParams=params)["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise ServerError(f"launchRun answered {result}")
    return result["run"]["runId"]


REPOSITORIES_QUERY = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"


def repository_name(servers: DagsterServers, location: str = LOCATION) -> str:
    nodes = servers.graphql(REPOSITORIES_QUERY)["repositoriesOrError"]["nodes"]
    [name] = [node["name"] for node in nodes if node["location"]["name"] == location]
    return name


def launch_job(
    servers: DagsterServers,
    job: str,
    run_config: Mapping | None = None,
    tags: Mapping[str, str] | None = None,
    location: str = LOCATION,
) -> str:
    """Launch one of the location's jobs as the launchpad does (its default run config filled in). Returns the
    run id."""
    params = {
        "mode": "default",
        "runConfigData": json.dumps(run_config or {}),
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": repository_name(servers, location),
            "jobName": job,
        },
    }
    result = servers.graphql(LAUNCH_RUN_MUTATION, executionParams=params)["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise ServerError(f"launchRun answered {result}")
    return result["run"]["runId"]


SENSOR_TICKS_QUERY = """
query SensorTicks($selector: SensorSelector!, $limit: Int) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: $limit) { status timestamp skipReason error { message } } } }
    ... on PythonError { message }
  }
}
"""


def sensor_ticks(servers: DagsterServers, sensor: str, limit: int = 20, location: str = LOCATION) -> list[dict]:
    """The sensor's latest ticks, newest first: status (SUCCESS, SKIPPED, FAILURE), timestamp, skip reason."""
    selector = {
        "repositoryLocationName": location,
        "repositoryName": repository_name(servers, location),
        "sensorName": sensor,
    }
    found = servers.graphql(SENSOR_TICKS_QUERY, selector=selector, limit=limit)["sensorOrError"]
    if found["__typename"] != "Sensor":
        raise ServerError(f"sensor {sensor}: {found}")
    return found["sensorState"]["ticks"]


def wait_for_ticks(servers: DagsterServers, sensor: str, count: int, after: float, timeout: float = 300) -> None:
    """Until the sensor has finished ``count`` ticks that started after ``after`` (a Unix time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ticks = [tick for tick in sensor_ticks(servers, sensor) if tick["timestamp"] > after]
        failed = [tick for tick in ticks if tick["status"] == "FAILURE"]
        if failed:
            raise ServerError(f"sensor {sensor} failed a tick: {failed[0]['error']}")
        if sum(tick["status"] in ("SUCCESS", "SKIPPED") for tick in ticks) >= count:
            return
        time.sleep(1)
    raise ServerError(f"sensor {sensor} did not tick {count} time(s) in {timeout:.0f} s:\n{servers.log_tail()}")


def wait_for_run_end(servers: DagsterServers, run_id: str, timeout: float = 600) -> str:
    """Until the run has finished, whichever way; its status (SUCCESS, FAILURE, CANCELED)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = servers.graphql(RUN_STATUS_QUERY, runId=run_id)["runOrError"]["status"]
        if status in FINISHED:
            return status
        time.sleep(1)
    raise ServerError(f"run {run_id} still running after {timeout:.0f} s:\n{servers.log_tail()}")


RUNS_QUERY = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId jobName status tags { key value } } }
  }
}
"""


def runs(servers: DagsterServers, job: str) -> list[dict]:
    """The job's runs, oldest first, each with its tags as a dict."""
    answer = servers.graphql(RUNS_QUERY, filter={"pipelineName": job})["runsOrError"]
    if answer["__typename"] != "Runs":
        raise ServerError(f"runs of {job}: {answer}")
    found = [{**run, "tags": {tag["key"]: tag["value"] for tag in run["tags"]}} for run in answer["results"]]
    return found[::-1]


def wait_until(
    what: str,
    servers: DagsterServers,
    found: Callable[[], object],
    timeout: float = 600,
    explain: Callable[[], str] | None = None,
) -> object:
    """Until ``found()`` is truthy; its value. On timeout the error names ``what``, adds ``explain()`` (the
    sensor ticks that should have acted, say) and the server log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(1)
    why = f"\n{explain()}" if explain else ""
    raise ServerError(f"no {what} after {timeout:.0f} s{why}\n{servers.log_tail()}")


RUN_STATUS_QUERY = "query RunStatus($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }"

RUN_EVENTS_QUERY = """
query RunEvents($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ErrorEvent { error { className message stack } }
      }
    }
  }
}
"""


def wait_for_run(servers: DagsterServers, run_id: str, timeout: float = 600) -> None:
    """Until the run succeeds; a failed or cancelled run raises with its error events and the server log."""
    deadline = time.monotonic() + timeout
    status = "unknown"
    while time.monotonic() < deadline:
        run = servers.graphql(RUN_STATUS_QUERY, runId=run_id)["runOrError"]
        if run["__typename"] != "Run":
            raise ServerError(f"run {run_id}: {run}")
        status = run["status"]
        if status == "SUCCESS":
            return
        if status in FINISHED:
            raise ServerError(f"run {run_id} ended {status}:\n{run_errors(servers, run_id)}\n{servers.log_tail()}")
        time.sleep(1)
    raise ServerError(
        f"run {run_id} still {status} after {timeout:.0f} s:\n{run_errors(servers, run_id)}\n{servers.log_tail()}"
    )


def run_errors(servers: DagsterServers, run_id: str) -> str:
    """The run's error-level events and their Python errors, one block each."""
    lines, cursor = [], None
    while True:
        logs = servers.graphql(RUN_EVENTS_QUERY, runId=run_id, cursor=cursor)["logsForRun"]
        if logs["__typename"] != "EventConnection":
            return f"no events for run {run_id}: {logs}"
        for event in logs["events"]:
            error = event.get("error")
            if event.get("level") in ("ERROR", "CRITICAL") or error:
                lines.append(f"{event['__typename']} {event.get('stepKey') or ''}: {event.get('message', '')}")
                if error:
                    lines.append(f"  {error['className']}: {error['message']}{''.join(error['stack'] or [])}")
        if not logs["hasMore"]:
            return "\n".join(lines) or "(no error events)"
        cursor = logs["cursor"]


METADATA_QUERY = """
query LatestMetadata($assetKey: AssetKeyInput!) {
  assetNodes(assetKeys: [$assetKey]) {
    assetMaterializations(limit: 1) {
      runId
      metadataEntries {
        __typename
        label
        ... on FloatMetadataEntry { floatValue }
        ... on IntMetadataEntry { intValue }
        ... on TextMetadataEntry { text }
        ... on MarkdownMetadataEntry { mdStr }
        ... on PathMetadataEntry { path }
        ... on BoolMetadataEntry { boolValue }
        ... on JsonMetadataEntry { jsonString }
      }
    }
  }
}
"""
_VALUE_FIELDS = ("floatValue", "intValue", "text", "mdStr", "path", "boolValue")


def latest_metadata(servers: DagsterServers, asset: str) -> tuple[str, dict[str, object]]:
    """The run id of an asset's latest materialization and its metadata, label to value (float, int, str, bool,
    and JSON as what it holds)."""
    (node,) = servers.graphql(METADATA_QUERY, assetKey={"path": [asset]})["assetNodes"]
    if not node["assetMaterializations"]:
        raise ServerError(f"{asset} has no materialization")
    (latest,) = node["assetMaterializations"]
    values = {}
    for entry in latest["metadataEntries"]:
        if "jsonString" in entry:
            values[entry["label"]] = json.loads(entry["jsonString"])
            continue
        values[entry["label"]] = next((entry[name] for name in _VALUE_FIELDS if name in entry), entry["__typename"])
    return latest["runId"], values


def answering_model_tag(url: str, deployed: Mapping[str, object]) -> str:
    """The model tag the server at ``url`` answers the local deployment's example row with, given its token:
    both as ``local_deployment``'s metadata (``latest_metadata``) records them."""
    response = requests.post(
        f"{url}/predict",
        json=json.loads(str(deployed["example_row"])),
        headers={"Authorization": f"Bearer {Path(str(deployed['token'])).read_text()}"},
        timeout=30,
    )
    if response.status_code != 200:
        raise ServerError(f"{url}/predict answered {response.status_code}: {response.text}")
    return response.json()["model_tag"]


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The bundled penguins example is a classification: these are the plots its evaluation_report carries.
EXAMPLE_PLOTS = ("confusion_matrix", "feature_importance")


def png_from_markdown(markdown: str) -> bytes:
    """The PNG inlined in ``![name](data:image/png;base64,...)``, as the evaluation asset writes it."""
    prefix = "(data:image/png;base64,"
    if prefix not in markdown:
        raise ValueError(f"no inline PNG in {markdown[:200]!r}")
    encoded = markdown.split(prefix, 1)[1].split(")", 1)[0]
    return base64.b64decode(encoded, validate=True)


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which always comes first after the signature."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """What a process started with ``&`` by a non-interactive shell inherits: SIGINT ignored. Started so,
    the stack used to ignore SIGTERM too; a fixture that starts it inside this block proves it no longer does."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
