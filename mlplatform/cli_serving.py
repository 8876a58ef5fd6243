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


def local_deployment(settings):
    from mlplatform.resources import LocalServing
    from mlplatform.settings import SettingsError

    if settings.deploy != "local":
        raise SettingsError(f"MLPLATFORM_DEPLOY={settings.deploy}: there is no local deployment to manage")
    return LocalServing.for_settings(settings).deployment()


def _serve(args: argparse.Namespace) -> int:
    deployment = local_deployment(args.settings)
    if args.status or args.stop:
        running = deployment.stop() if args.stop else deployment.current()
        if running is None:
            print(f"nothing serves from {deployment.folder}")
        else:
            verb = "stopped" if args.stop else "serves"
            print(f"{running.url} {verb} {running.model_tag} (bento {running.bento}, pid {running.pid})")
        return 0
    return _deploy_champion(args.settings)


def _deploy_champion(settings) -> int:
    from mlplatform import definitions, summary
    from mlplatform.cli import instance
    from mlplatform.commands import command

    with instance(settings) as project_instance:
        if summary.latest_metadata(project_instance, "champion_model") == {}:
            first = command("run", settings=settings)
            print(f"error: there is no champion to serve yet: run `{first}` first", file=sys.stderr)
            return 2
        config = definitions.run_config(settings.spec_path, progress=True)
        if not execute(project_instance, definitions.DEPLOY_CHAMPION, settings, config):
            return 1
        print(summary.serving_lines(project_instance, settings), end="")
    return 0
