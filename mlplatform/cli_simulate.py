"""``mlplatform simulate``: the platform's loop, watched without real users. ``setup`` makes a copy of the bundled
example whose source is a landing folder; ``batch`` lands a new batch there; ``traffic`` sends rows to the local
deployment and can write the labels of what it sent. ``--drift`` shifts the numbers and turns the category mix
around (``mlplatform.lib.monitoring.simulate``)."""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

SPEC_FILE = "penguins.yaml"
SETUP_HEADER = """\
# A copy of the bundled example, made by `mlplatform simulate setup`, for watching the loop: batches land in
# landing/ (`mlplatform simulate batch`), labels for served predictions in labels/ (`simulate traffic --labels`),
# and the sensors start switched on (turn them off here or in the UI).
"""


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> dict:
    simulate = commands.add_parser(
        "simulate", help="land batches, send traffic and write labels, to watch the loop without real users"
    )
    actions = simulate.add_subparsers(dest="action", required=True)
    setup = actions.add_parser("setup", help="copy the bundled example into FOLDER, its source a landing folder")
    setup.add_argument("folder", type=Path)

    drift = argparse.ArgumentParser(add_help=False)
    drift.add_argument("--drift", action="store_true", help="shift the numbers and turn the category mix around")
    drift.add_argument("--sigmas", type=float, default=1.0, help="with --drift: standard deviations (default 1)")
    drift.add_argument("--seed", type=int, default=None, help="for the same rows again (default: new ones)")
    batch = actions.add_parser("batch", parents=[common, drift], help="land a new batch in the spec's folder source")
    batch.add_argument("--rows", type=int, default=200)
    traffic = actions.add_parser(
        "traffic", parents=[common, drift], help="send rows to the local deployment, and --labels to write theirs"
    )
    traffic.add_argument("--rows", type=int, default=500)
    traffic.add_argument("--batch-rows", type=int, default=50, help="rows per request (1: POST /predict)")
    traffic.add_argument("--labels", action="store_true", help="write the sent rows' labels to monitoring.labels.uri")
    return {"simulate": _simulate}


def _simulate(args: argparse.Namespace) -> int:
    from mlplatform.lib.data.ingest import IngestionError
    from mlplatform.lib.monitoring.simulate import SimulationError

    if args.action == "setup":
        return _setup(args.folder)
    from mlplatform.resources.object_storage import configure_object_storage
    from mlplatform.settings import Settings

    if args.rows < 1:
        print("error: --rows must be at least 1", file=sys.stderr)
        return 2
    settings = Settings.from_env(home=args.home, spec_path=args.spec)
    configure_object_storage(settings)  # the batches it lands are encrypted like every object the platform writes
    try:
        return (_batch if args.action == "batch" else _traffic)(args, settings)
    except (SimulationError, IngestionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _setup(folder: Path) -> int:
    import yaml

    from mlplatform.commands import command
    from mlplatform.lib.spec import default_spec_path, load_spec

    folder = folder.expanduser().resolve()
    spec_file = folder / SPEC_FILE
    if spec_file.exists():
        print(f"error: {spec_file} exists; give another folder (nothing was changed)", file=sys.stderr)
        return 2
    document = yaml.safe_load(default_spec_path().read_text())
    document["source"] = {"uri": "landing/"}
    document["automation"] = {
        **document.get("automation", {}),
        **{"new_data": True, "retrain": True, "monitor": True, "cooldown_minutes": 5},
    }
    document["monitoring"] = {
        **document.get("monitoring", {}),
        **{"labels": {"uri": "labels/"}, "max_decay": 0.05, "every_minutes": 5},
    }
    (folder / "landing").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    shutil.copyfile(default_spec_path().parent / "penguins.csv", folder / "landing" / "penguins.csv")
    spec_file.write_text(SETUP_HEADER + yaml.safe_dump(document, sort_keys=False))
    load_spec(spec_file)  # what was written must be a spec the platform takes
    print(f"wrote {spec_file}: the bundled example, its batches landing in {folder / 'landing'}")
    print("next: the UI and the daemon, its sensors on; then a new batch; then predictions and their labels")
    for words in (("dev",), ("simulate", "batch"), ("simulate", "traffic", "--labels")):
        print(f"  {command(*words, '--spec', str(spec_file))}")
    return 0


def _batch(args: argparse.Namespace, settings) -> int:
    import numpy as np
    from upath import UPath

    from mlplatform.lib.data import ingest
    from mlplatform.lib.monitoring import simulate
    from mlplatform.lib.spec import load_spec
    from mlplatform.lib.storage import write_atomically

    spec = load_spec(settings.spec_path)
    files = ingest.list_files(spec) if spec.source.kind in ("file", "s3") else None
    if files is None or not files.is_folder:
        raise simulate.SimulationError(
            f"source.uri {spec.source.uri!r} is not a folder, so no batch can land in it; "
            "`mlplatform simulate setup FOLDER` makes a copy of the bundled example that reads one"
        )
    now = datetime.now(UTC)
    sigmas = args.sigmas if args.drift else 0.0
    raw = ingest.read_source(spec)
    batch = simulate.new_batch(raw, spec, args.rows, sigmas=sigmas, rng=np.random.default_rng(args.seed), now=now)
    target = UPath(files.location) / f"simulated-{now:%Y%m%dT%H%M%S%fZ}{'-drifted' if args.drift else ''}.csv"
    write_atomically(target, batch.to_csv(index=False).encode())
    print(f"landed {len(batch)} rows in {target}{_drifted(args)}")
    return 0


def _traffic(args: argparse.Namespace, settings) -> int:
    import numpy as np
    import pandas as pd

    from mlplatform.cli_serving import local_deployment
    from mlplatform.lib.data import ingest
    from mlplatform.lib.data.cleaning import clean
    from mlplatform.lib.monitoring import labels, simulate
    from mlplatform.lib.serving.serving import request_rows
    from mlplatform.lib.spec import load_spec
    from mlplatform.resources import ModelRegistry

    spec = load_spec(settings.spec_path)
    deployment = local_deployment(settings)
    running = deployment.current()
    if running is None:
        raise simulate.SimulationError(f"nothing serves at {deployment.url}: `mlplatform serve` starts the champion")
    registry = ModelRegistry.for_settings(settings)
    schema = registry.for_project(spec.name).load(running.model_tag).schema
    by = labels.join_column(spec)
    if args.labels:
        _check_labels_can_join(spec, schema, by, running.model_tag)
    rng = np.random.default_rng(args.seed)
    cleaned, _ = clean(ingest.read_source(spec), spec)
    sent = simulate.draw(cleaned, args.rows, rng)
    if args.drift:
        sent = simulate.shifted(sent, cleaned, spec, args.sigmas, rng)
    rows = request_rows(simulate.servable(sent, schema), schema)
    answers, predictions = _send(deployment.url, deployment.token(), rows, args.batch_rows)
    print(f"sent {len(rows)} rows to {deployment.url} ({running.model_tag}){_drifted(args)}")
    counts = pd.Series(predictions).value_counts(normalize=True)
    if spec.problem.task == "classification":
        print("  answers: " + ", ".join(f"{label} {share:.0%}" for label, share in counts.head(8).items()))
    if args.labels:
        path = _write_labels(spec, simulate.labels_for(sent, answers, spec, by))
        print(f"  their labels, joined by {by}: {path}")
    return 0


def _drifted(args: argparse.Namespace) -> str:
    if not args.drift:
        return ""
    return f", drifted by {args.sigmas:g} standard deviation{'' if args.sigmas == 1 else 's'}"


def _check_labels_can_join(spec, schema: dict, by: str, tag: str) -> None:
    from mlplatform.lib.monitoring.labels import REQUEST_ID
    from mlplatform.lib.monitoring.simulate import SimulationError

    if spec.monitoring.labels is None:
        raise SimulationError("the spec names no monitoring.labels.uri, so there is nowhere to write labels")
    if by != REQUEST_ID and schema.get("id_column") != by:
        raise SimulationError(
            f"labels join by {by!r}, which requests to {tag} cannot carry (it was trained without that id column); "
            "set monitoring.labels.id_column: request_id"
        )


def _send(url: str, token: str, rows: list[dict], batch_rows: int) -> tuple[list[tuple[str, int]], list]:
    """POST the rows, ``batch_rows`` per request; each row's (request_id, request_row), and the answers."""
    import requests

    from mlplatform.lib.monitoring.simulate import SimulationError

    answers, predictions = [], []
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        for start in range(0, len(rows), batch_rows):
            chunk = rows[start : start + batch_rows]
            single = batch_rows == 1
            path = "/predict" if single else "/predict_batch"
            response = session.post(url + path, json=chunk[0] if single else {"rows": chunk}, timeout=60)
            if response.status_code != 200:
                raise SimulationError(f"{url}{path} answered {response.status_code}: {response.text[:500]}")
            body = response.json()
            answered = [body] if single else body["predictions"]
            answers += [(body["request_id"], row) for row in range(len(chunk))]
            predictions += [answer["prediction"] for answer in answered]
    return answers, predictions


def _write_labels(spec, frame) -> str:
    from upath import UPath

    from mlplatform.lib.spec import Source, expand_env
    from mlplatform.lib.storage import write_atomically

    uri = expand_env(spec.monitoring.labels.uri, "monitoring.labels.uri")
    folder = UPath(uri) if Source(uri=uri).kind == "s3" else UPath(spec.resolve_path(uri))
    path = folder / f"labels-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.csv"
    write_atomically(path, frame.to_csv(index=False).encode())
    return str(path)
