"""The ``mlplatform`` command: run the whole graph for a spec, check a spec, open the UI, make data, simulate use."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

from mlplatform import cli_kubernetes, cli_models, cli_serving, cli_simulate
from mlplatform.lib.spec import SpecError, load_spec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Exit codes, so a script or a scheduler can tell a rejected batch from a crash and a lost gate from both.
EXIT_DONE = 0  # the new model is champion, or there was nothing new to do
EXIT_FAILED = 1  # something broke: the run's error is printed
EXIT_BAD_INPUT = 2  # a spec or a model tag that cannot be used
EXIT_KEPT_CHAMPION = 3  # the run worked (it succeeded), and the gate's verdict kept its model out
EXIT_REJECTED = 4  # a batch failed its checks (or could not be read) and waits in quarantine
EXIT_CODES = f"""exit codes of `run` (and the commands that run jobs):
  {EXIT_DONE}  done: the new model is champion, or there was nothing new to train on
  {EXIT_FAILED}  something broke (the error is printed)
  {EXIT_BAD_INPUT}  a spec or model tag that cannot be used
  {EXIT_KEPT_CHAMPION}  the model was trained and stored, but not promoted (it did not beat the champion, which
     keeps serving, or missed a floor)
  {EXIT_REJECTED}  a batch was rejected by its checks (or unreadable) and kept in quarantine"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mlplatform", description=__doc__, epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="materialize every asset for a spec through Dagster, then summarize",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--spec", type=Path, default=None, help="project spec (default: $MLPLATFORM_SPEC or the bundled example)"
    )
    run.add_argument(
        "--home", type=Path, default=None, help="state folder (default: $MLPLATFORM_HOME or ./.mlplatform)"
    )

    check = commands.add_parser("check-spec", help="check a spec file's shape and print what it means")
    check.add_argument("spec", type=Path)

    dev = commands.add_parser("dev", help="start the Dagster UI and daemon on this project's instance")
    dev.add_argument("--home", type=Path, default=None, help="state folder (default: $MLPLATFORM_HOME)")
    dev.add_argument("--spec", type=Path, default=None, help="the jobs' default spec (default: $MLPLATFORM_SPEC)")
    dev.add_argument("--port", type=int, default=3000)

    synth = commands.add_parser("synth", help="write synthetic rows with the bundled example's schema")
    synth.add_argument("--rows", type=int, required=True)
    synth.add_argument("--out", type=Path, required=True, help="a .csv or .parquet file")
    synth.add_argument("--seed", type=int, default=0)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--spec", type=Path, default=None, help="project spec (default: $MLPLATFORM_SPEC)")
    common.add_argument("--home", type=Path, default=None, help="state folder (default: $MLPLATFORM_HOME)")
    handlers = {"run": _run, "check-spec": _check_spec, "dev": _dev, "synth": _synth}
    handlers |= cli_models.add_commands(commands, common)
    handlers |= cli_serving.add_commands(commands, common)
    handlers |= cli_simulate.add_commands(commands, common)
    handlers |= cli_kubernetes.add_commands(commands, common)

    args = parser.parse_args(argv)
    try:
        if args.command in ("models", "promote", "rollback", "reproduce", "serve", "manifests", "status"):
            args.settings = _settings(args.home, args.spec)
        return handlers[args.command](args)
    except Exception as exc:
        if not isinstance(exc, _refusals()):
            raise  # a bug (a KeyError, say): its traceback is what a person needs
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _refusals() -> tuple[type[Exception], ...]:
    """The platform's own refusals of what was asked: a spec, a setting, a model tag or a data version that
    cannot be used. Imported only once something failed: the registry brings pandas and scikit-learn."""
    from mlplatform.lib.data.batches import UnknownDataVersion
    from mlplatform.lib.deployment.kubernetes import ManifestError
    from mlplatform.lib.registry.registry import RegistryError
    from mlplatform.resources.kubernetes_api import ClusterError
    from mlplatform.resources.kubernetes_deploy import DeployError
    from mlplatform.settings import SettingsError

    return (SpecError, SettingsError, RegistryError, UnknownDataVersion, ManifestError, ClusterError, DeployError)


def _check_spec(args: argparse.Namespace) -> int:
    from mlplatform.lib.quality import builders, gx_suites
    from mlplatform.lib.training import candidates

    spec = load_spec(args.spec)
    try:
        expectations = gx_suites.check_expectations(spec)  # imports GX: slower, but a typo fails here
        candidates.candidates(spec)  # an estimator the catalogue lacks fails here too
    except (builders.QualityError, candidates.CandidateError) as exc:
        print(f"error: {args.spec}: {exc}", file=sys.stderr)
        return 2
    problem, profile = spec.problem, spec.quality.profile
    print(f"{args.spec}: OK")
    print(f"  project   {spec.name}")
    print(f"  problem   {problem.task} of {problem.target!r}, optimising {problem.primary_metric}")
    print(f"  source    {spec.source.kind}: {spec.source.uri} ({spec.source.mode})")
    if problem.id_column or problem.time_column or problem.drop_columns:
        print(f"  excluded  id={problem.id_column} time={problem.time_column} dropped={list(problem.drop_columns)}")
    print(f"  split     {spec.split.holdout_fraction:.0%} holdout, seed {spec.split.seed}")
    learned = f"learned from accepted data ({profile.severity})" if profile.enabled else "off"
    contract = f"contract on {len(spec.quality.columns)} column(s)"
    print(f"  quality   {contract}; profile {learned}; {expectations} expectation(s) of your own")
    chosen = candidates.candidates(spec)
    budgets = ", ".join(
        f"{name} ({c.estimator}, {c.trials} trials{f', <= {c.seconds:g} s' if c.seconds else ''}{_in_pod(c)})"
        for name, c in chosen.items()
    )
    print(f"  training  {budgets}; {spec.training.cv_folds}-fold cross-validation, seed {spec.training.seed}")
    if spec.evaluation.slice_columns:
        print(f"  slices    holdout metrics per value of {', '.join(spec.evaluation.slice_columns)}")
    floors = ", ".join(f"{metric} {value:g}" for metric, value in spec.promotion.floors.items()) or "none"
    margin = f"{problem.primary_metric} by >= {spec.promotion.margin:g}"
    print(f"  promotion floors: {floors}; must beat the champion's {margin}")
    size = spec.deployment
    scaling = f"{size.min_replicas}-{size.max_replicas} at {size.target_cpu_percent}% CPU"
    resources = f"{size.cpu}/{size.memory} requested, {size.cpu_limit}/{size.memory_limit} limit"
    print(f"  k8s       {size.replicas} pod(s), {scaling}; {resources}; {size.service_type}")
    print("  (columns and the source itself are checked at the first ingestion)")
    return 0


def _in_pod(candidate) -> str:
    """How check-spec names a candidate's own pod (``resources.pod``); nothing for a search in its step."""
    pod = candidate.resources.pod
    if pod is None:
        return ""
    asked = [f"{pod.cpu} CPU" if pod.cpu else "", pod.memory or "", f"{pod.gpu} GPU" if pod.gpu else ""]
    image = pod.image or "the platform's image"
    return f", in its own pod: {image}{''.join(f', {part}' for part in asked if part)}"


def _settings(home: Path | None, spec: Path | None):
    """The settings for a command (its ``--home`` and ``--spec`` over the environment's), with the Dagster
    instance's folder holding the project's dagster.yaml, or the one MLPLATFORM_DAGSTER_CONFIG names."""
    from mlplatform.resources.object_storage import configure_object_storage
    from mlplatform.settings import Settings

    settings = Settings.from_env(home=home, spec_path=spec)
    configure_object_storage(settings)  # before any S3 access: every object the command writes is encrypted
    dagster_home = settings.dagster_home
    dagster_home.mkdir(parents=True, exist_ok=True)
    template = settings.dagster_config or instance_config()
    installed = dagster_home / "dagster.yaml"
    if not installed.exists() or installed.read_bytes() != template.read_bytes():
        shutil.copyfile(template, installed)
    return settings


def instance(settings):
    """The project's Dagster instance, open for a block: SQLite under the home folder, configured by its
    dagster.yaml; disposed of on the way out."""
    return opened_instance(settings.dagster_home)


@contextlib.contextmanager
def opened_instance(folder: Path):
    """The Dagster instance configured in ``folder`` (its dagster.yaml), open for a block, then disposed of.

    Not ``with DagsterInstance(...)``: in Dagster 1.13 its ``__enter__`` sets the process's current definitions
    state storage (a context variable holding a weak reference to the instance) and its ``__exit__`` never
    resets it, so every later definitions load in the same thread (the next command run in-process, a test
    after it) fails with "Attempted to resolve undefined DagsterInstance weakref". This code location keeps no
    definitions state, so nothing needs that storage set."""
    import dagster as dg

    opened = dg.DagsterInstance.from_config(str(folder))
    try:
        yield opened
    finally:
        opened.dispose()


def instance_config() -> Path:
    """The project's dagster.yaml: packaged in the wheel, or beside workspace.yaml in a checkout."""
    from mlplatform.lib.project_files import project_file

    return project_file("dagster.yaml")


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args.home, args.spec)
    spec_path = settings.spec_path
    spec = load_spec(spec_path)  # a malformed spec stops here, before anything starts

    import dagster as dg
    from upath import UPath

    from mlplatform import definitions, summary
    from mlplatform.lib.data import batches, ingest
    from mlplatform.resources import ModelRegistry

    run_config = definitions.run_config(spec_path, progress=True)
    tags = {"mlplatform/spec": str(spec_path), "mlplatform/launched_by": "cli"}

    def execute(name: str, what: str, batch: dict[str, str] | None = None) -> dg.ExecuteJobResult:
        print(f"mlplatform: {what}", flush=True)
        config, run_tags = run_config, tags
        if batch:  # the ingest run names its file in its config, and the batch in its tags (the UI filters by them)
            config = {**run_config, "ops": {"raw_batch": {"config": {"file": batch["file"]}}}}
            run_tags = {**tags, "mlplatform/batch": batch["batch_id"], "mlplatform/file": batch["file"]}
        job = definitions.reconstructable_job(name, settings)
        return dg.execute_job(job, instance=project_instance, run_config=config, tags=run_tags)

    with instance(settings) as project_instance:
        try:
            files = ingest.list_files(spec) if spec.source.kind in ("file", "s3") else None
        except ingest.IngestionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        ledger = batches.BatchLedger(UPath(settings.artifact_root) / "batches")
        # Ingest first: a snapshot is read once; each new file of a folder is validated in a run of its own.
        run_ids, rejected = [], []
        arrivals = batches.new_arrivals(spec, ledger, files) if batches.appends(spec, files) else [None]
        for arrival in arrivals:
            what = f"validating {arrival.name}" if arrival else f"validating the batch from {spec.source.uri}"
            batch = {"file": arrival.path, "batch_id": arrival.batch_id} if arrival else {}
            result = execute(definitions.INGEST_BATCH, what, batch)
            outcome = summary.outcome(result)
            if outcome == summary.FAILED:
                return _failed(result, summary)
            if outcome == summary.REJECTED:
                _failed(result, summary)
                rejected += [line for line in summary.failures(result) if not line.startswith("  ")]
                continue
            run_ids.append(result.run_id)
        if not run_ids and not rejected:
            print(f"mlplatform: no new batch in {spec.source.uri}", flush=True)
        accepted = summary.latest_metadata(project_instance, "accepted_data")
        if not accepted:
            print("error: no batch has been accepted, so there is nothing to train on", file=sys.stderr)
            return EXIT_REJECTED if rejected else EXIT_FAILED

        # Then train, unless a stored model already comes from this data, spec and code.
        models = ModelRegistry.for_settings(settings)
        existing = models.for_project(spec.name).trained_on(str(accepted["data_version"]), spec)
        if existing is not None:
            print()
            print(summary.render_nothing_new(project_instance, settings, existing.tag, rejected))
            return EXIT_REJECTED if rejected else EXIT_DONE
        result = execute(definitions.TRAIN_AND_EVALUATE, "training and evaluating on the accepted data")
        run_ids.append(result.run_id)
        outcome = summary.outcome(result)
        if outcome == summary.FAILED:
            return _failed(result, summary)
        print()
        print(summary.render(project_instance, settings, run_ids, rejected))
        if rejected:
            return EXIT_REJECTED
        return EXIT_KEPT_CHAMPION if outcome == summary.KEPT_CHAMPION else EXIT_DONE


def _failed(result, summary) -> int:
    print(f"\nerror: run {result.run_id} failed", file=sys.stderr)
    for line in summary.failures(result):
        print(f"  {line}", file=sys.stderr)
    return EXIT_FAILED


def _dev(args: argparse.Namespace) -> int:
    settings = _settings(args.home, args.spec)
    # Dagster starts in DAGSTER_HOME so that the dagster.yaml it finds in its current folder is the instance's
    # own (a copy of the project's): started in a checkout, it warns that the checkout's copy "will not be
    # used". Its processes read the settings from their environment: home and spec, absolute, go there.
    environ = {
        **os.environ,
        "DAGSTER_HOME": str(settings.dagster_home),
        "MLPLATFORM_HOME": str(settings.home),
        "MLPLATFORM_SPEC": str(settings.spec_path),
    }
    workspace = PROJECT_ROOT / "workspace.yaml"
    target = ["-w", str(workspace)] if workspace.is_file() else ["-m", "mlplatform.definitions"]
    # `dg dev`, not `dagster dev` (superseded in Dagster 1.13, and it says so on every start).
    command = [sys.executable, "-m", "dagster_dg_cli.cli", "dev", "-h", "127.0.0.1", "-p", str(args.port), *target]
    print(f"mlplatform: Dagster UI at http://127.0.0.1:{args.port} (instance {settings.dagster_home})", flush=True)
    # Started in the background by a non-interactive shell, SIGINT arrives ignored and Dagster copies that
    # onto SIGTERM in every child; restore both so `kill` stops the whole stack.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.chdir(settings.dagster_home)
    os.execve(sys.executable, command, environ)
    return 0  # not reached: execv replaces this process


def _synth(args: argparse.Namespace) -> int:
    from mlplatform.lib.data import synthetic

    frame = synthetic.penguins(args.rows, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".parquet":
        frame.to_parquet(args.out, index=False)
    else:
        frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
