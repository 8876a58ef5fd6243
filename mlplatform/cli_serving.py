"""``mlplatform serve``: the local deployment from the command line. Deploying goes through the Dagster job
``deploy_champion``, so the UI records it like any other materialization of ``local_deployment``."""

from __future__ import annotations

import argparse
import sys

from mlplatform.cli_models import execute


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> dict:
    serve = commands.add_parser(
        "serve", parents=[common], help="serve the champion on this machine again (or --status, --stop)"
    )
    what = serve.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true", help="say what serves, if anything, and stop there")
    what.add_argument("--stop", action="store_true", help="stop the local server")
    return {"serve": _serve}


def _deployment():
    from mlplatform.resources import LocalServing
    from mlplatform.settings import Settings, SettingsError

    settings = Settings.from_env()
    if settings.deploy != "local":
        raise SettingsError(f"MLPLATFORM_DEPLOY={settings.deploy}: there is no local deployment to manage")
    return LocalServing.for_settings(settings).deployment()


def _serve(args: argparse.Namespace) -> int:
    deployment = _deployment()
    if args.status or args.stop:
        running = deployment.stop() if args.stop else deployment.current()
        if running is None:
            print(f"nothing serves from {deployment.folder}")
        else:
            verb = "stopped" if args.stop else "serves"
            print(f"{running.url} {verb} {running.model_tag} (bento {running.bento}, pid {running.pid})")
        return 0
    return _deploy_champion()


def _deploy_champion() -> int:
    import dagster as dg

    from mlplatform import definitions, summary
    from mlplatform.commands import command
    from mlplatform.settings import Settings

    with dg.DagsterInstance.get() as instance:
        if summary.latest_metadata(instance, "champion_model") == {}:
            first = command("run", settings=Settings.from_env())
            print(f"error: there is no champion to serve yet: run `{first}` first", file=sys.stderr)
            return 2
        config = definitions.run_config(Settings.from_env().spec_path, progress=True)
        if not execute(instance, definitions.deploy_champion_job, config):
            return 1
        print(summary.serving_lines(instance), end="")
    return 0
