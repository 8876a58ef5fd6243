"""``mlplatform models | promote | rollback | reproduce``: the registry from the command line. Changes of
champion go through the Dagster job ``promote_model``, so the UI shows them beside the runs that trained."""

from __future__ import annotations

import argparse
import getpass
import sys


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> dict:
    models = commands.add_parser("models", parents=[common], help="list stored model versions and the champion")
    models.add_argument("--history", action="store_true", help="also list every change of champion")

    promote = commands.add_parser("promote", parents=[common], help="make a stored model version the champion")
    promote.add_argument("tag", help="project:version, as `mlplatform models` lists it")
    promote.add_argument("--reason", required=True, help="why (recorded with the change)")
    promote.add_argument("--by", default=None, help="who asks (default: the current user)")

    rollback = commands.add_parser("rollback", parents=[common], help="restore the previous (or a named) champion")
    rollback.add_argument("tag", nargs="?", default="", help="an earlier version (default: the previous champion)")
    rollback.add_argument("--reason", required=True, help="why (recorded with the change)")
    rollback.add_argument("--by", default=None, help="who asks (default: the current user)")
    rollback.add_argument(
        "--target",
        choices=["champion", "k8s"],
        default="champion",
        help="champion: move the champion pointer and redeploy (default); k8s: undo the cluster's last rollout only",
    )

    reproduce = commands.add_parser(
        "reproduce", parents=[common], help="retrain at a model's recorded data version and compare its metrics"
    )
    reproduce.add_argument("tag", help="project:version of the model to reproduce")
    return {"models": _models, "promote": _promote, "rollback": _rollback, "reproduce": _reproduce}


def execute(instance, job: str, settings, run_config: dict, tags: dict[str, str] | None = None) -> bool:
    """Run one of the Definitions' jobs, by name, for these settings in this process; on failure, print why
    to stderr."""
    import dagster as dg

    from mlplatform import definitions, summary

    result = dg.execute_job(
        definitions.reconstructable_job(job, settings),
        instance=instance,
        run_config=run_config,
        tags={"mlplatform/launched_by": "cli", **(tags or {})},
    )
    if not result.success:
        print(f"error: run {result.run_id} failed", file=sys.stderr)
        for line in summary.failures(result):
            print(f"  {line}", file=sys.stderr)
    return result.success


def _registry(args):
    from mlplatform.lib.spec import load_spec
    from mlplatform.resources import ModelRegistry

    settings = args.settings
    spec = load_spec(settings.spec_path)
    return ModelRegistry.for_settings(settings).for_project(spec.name), spec


def _models(args: argparse.Namespace) -> int:
    from mlplatform.commands import command

    registry, spec = _registry(args)
    champion = registry.champion()
    versions = registry.versions()
    if not versions:
        first = command("run", settings=args.settings)
        print(f"no model of {spec.name!r} is stored in {registry.store.where}; run `{first}` first")
        return 0
    metric = spec.problem.primary_metric
    print(f"{'':2}{'tag':<34} {'estimator':<32} {metric:>10}  {'data version':<18} trained")
    for version in versions:
        mark = "* " if champion and champion.tag == version.tag else "  "
        value = version.metrics.get(metric)
        shown = f"{value:.4f}" if value is not None else "-"
        labels = version.labels
        print(
            f"{mark}{version.tag:<34} {labels.get('estimator', '?'):<32} {shown:>10}  "
            f"{labels.get('data_version', '?'):<18} {labels.get('trained_at', version.created)}"
        )
    print("\n* champion" if champion else "\nno champion yet")
    if args.history:
        print("\nchanges of champion:")
        for change in registry.history():
            was = f"(was {change.previous})"
            print(f"  {change.at}  {change.kind:<8} {change.tag}  {was}  by {change.by}: {change.reason}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    return _change_champion(args, {"tag": args.tag, "rollback": False})


def _rollback(args: argparse.Namespace) -> int:
    if args.target == "k8s":
        from mlplatform import cli_kubernetes

        return cli_kubernetes.rollback(args)
    return _change_champion(args, {"tag": args.tag, "rollback": True})


def _change_champion(args: argparse.Namespace, change: dict) -> int:
    from mlplatform import definitions, summary
    from mlplatform.cli import instance

    settings = args.settings
    if change["tag"]:  # refused here, naming the stored versions: not a failed run to dig into
        _registry(args)[0].version(change["tag"])
    config = definitions.run_config(settings.spec_path, progress=True)
    config["ops"] = {
        "champion_model": {"config": {**change, "reason": args.reason, "requested_by": args.by or getpass.getuser()}}
    }
    with instance(settings) as project_instance:
        if not execute(project_instance, definitions.PROMOTE_MODEL, settings, config):
            return 1
        done = summary.latest_metadata(project_instance, "champion_model")
        served = summary.serving_lines(project_instance, settings)
    print(f"champion is now {done['tag']} (was {done['previous'] or 'none'}): {done['kind']} by {done['by']}")
    print(f"  reason: {done['reason']}")
    print(served, end="")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from mlplatform import definitions, summary
    from mlplatform.cli import instance

    settings = args.settings
    registry, spec = _registry(args)
    original = registry.version(args.tag)
    data_version = original.data_version
    config = definitions.run_config(settings.spec_path, progress=True)
    config["ops"] = {"cleaned_data": {"config": {"data_version": data_version}}}
    print(f"mlplatform: retraining {spec.name!r} at data version {data_version} to reproduce {original.tag}")
    with instance(settings) as project_instance:
        tags = {"mlplatform/reproduces": original.tag}
        if not execute(project_instance, definitions.REPRODUCE_MODEL, settings, config, tags):
            return 1
        tag = summary.latest_metadata(project_instance, "challenger_model")["tag"]
    again = registry.version(tag)
    print(f"\n  original    {original.tag}  code {original.labels.get('code_version')}")
    print(f"  reproduced  {again.tag}  code {again.labels.get('code_version')}")
    differ = []
    for name in sorted(original.metrics):
        before, after = original.metrics[name], again.metrics.get(name)
        same = after is not None and abs(before - after) <= 1e-9
        differ += [] if same else [name]
        shown = "missing" if after is None else f"{after:.6f}"
        print(f"    {name:<18} {before:.6f}  {shown}  {'same' if same else 'DIFFERS'}")
    if differ:
        print(f"error: {len(differ)} metric(s) differ: {', '.join(differ)}", file=sys.stderr)
        return 1
    print("  every metric reproduced")
    return 0
