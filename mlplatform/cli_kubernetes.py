"""``mlplatform manifests``: the champion's Kubernetes manifests written as YAML, applied to nothing. The image
is the champion's as ``model_image`` last pushed it, pinned by digest; the sizing is the spec's ``deployment``.

``mlplatform deploy --target k8s``: the champion's bento, image and Deployment made again through the Dagster job
``deploy_champion`` (so the UI records it as a materialization of ``kubernetes_deployment``), rolled back when
the new version fails; ``mlplatform status``: what the cluster serves; ``mlplatform rollback --target k8s``: the
Deployment back to its previous revision (``kubectl rollout undo``), the champion pointer left as it is."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> dict:
    manifests = commands.add_parser(
        "manifests", parents=[common], help="write the champion's Kubernetes manifests as YAML (applies nothing)"
    )
    manifests.add_argument("--out", type=Path, required=True, help="the folder to write them to")
    manifests.add_argument(
        "--image", default=None, help="registry/repository@sha256:... (default: the champion's pushed image)"
    )
    manifests.add_argument("--namespace", default=None, help="set metadata.namespace (default: none, kubectl's own)")
    versions = manifests.add_mutually_exclusive_group()
    versions.add_argument(
        "--kubernetes-version",
        default=None,
        help="the API versions this release serves, e.g. 1.20 (default: the newest, autoscaling/v2 and policy/v1)",
    )
    versions.add_argument(
        "--discover", action="store_true", help="ask the cluster $KUBECONFIG names which API versions it serves"
    )
    manifests.add_argument(
        "--kubeconfig",
        default=None,
        help="with --discover: the cluster's kubeconfig (default: $KUBECONFIG, ~/.kube/config)",
    )
    deploy = commands.add_parser(
        "deploy", parents=[common], help="build, push and roll out the champion (rolled back if it fails)"
    )
    deploy.add_argument(
        "--target",
        choices=["k8s", "local"],
        default=None,
        help="k8s: a Deployment in $MLPLATFORM_K8S_NAMESPACE; local: bentoml serve (default: $MLPLATFORM_DEPLOY)",
    )
    commands.add_parser("status", parents=[common], help="what the cluster serves: model, image, revision, pods")
    return {"manifests": _manifests, "deploy": _deploy, "status": _status}


def _deploy(args: argparse.Namespace) -> int:
    import os

    from mlplatform.cli import _settings
    from mlplatform.cli_serving import _deploy_champion

    if args.target:
        # the job's processes build their settings from this environment (definitions.job)
        os.environ["MLPLATFORM_DEPLOY"] = args.target
    settings = _settings(args.home, args.spec)
    if settings.deploy == "none":
        print("error: MLPLATFORM_DEPLOY=none: say where with --target k8s or --target local", file=sys.stderr)
        return 2
    return _deploy_champion(settings)


def cluster_target(settings):
    from mlplatform.resources import KubernetesServing

    return KubernetesServing.for_settings(settings).target()


def _status(args: argparse.Namespace) -> int:
    from mlplatform.lib.spec import load_spec

    settings = args.settings
    project = load_spec(settings.spec_path).name
    target = cluster_target(settings)
    release = target.current(project)
    if release is None:
        print(f"nothing of {project!r} is deployed in namespace {target.namespace}")
        return 0
    print(f"{release.namespace}/{release.name} serves {release.model_tag or '(no model tag)'}")
    print(f"  revision  {release.revision}")
    print(f"  image     {release.image}")
    print(f"  pods      {release.ready_replicas} of {release.replicas} ready ({release.updated_replicas} updated)")
    print(f"  service   {release.url}")
    if release.rollback_reason:
        print(f"  ROLLED BACK: the last deploy failed and was undone: {release.rollback_reason}")
    return 0


def rollback(args: argparse.Namespace) -> int:
    """``mlplatform rollback --target k8s``: the Deployment's previous revision back, waited for."""
    from mlplatform.lib.spec import load_spec

    if args.tag:
        print("error: --target k8s rolls back to the previous revision: name no model tag", file=sys.stderr)
        return 2
    settings = args.settings
    project = load_spec(settings.spec_path).name
    target = cluster_target(settings)
    before = target.current(project)
    serving = target.rollback(project, reason=f"by hand: {args.reason}")
    was = f"{before.model_tag}, revision {before.revision}" if before else "nothing"
    where = f"{serving.namespace}/{serving.name}"
    print(f"{where} serves {serving.model_tag} again, revision {serving.revision} (was {was})")
    print(f"  image  {serving.image}; {serving.ready_replicas} of {serving.replicas} pods ready")
    print("  the champion pointer is unchanged: `mlplatform rollback` without --target k8s moves it")
    return 0


def _manifests(args: argparse.Namespace) -> int:
    import yaml
    from upath import UPath

    from mlplatform.lib.deployment import kubernetes
    from mlplatform.lib.spec import load_spec
    from mlplatform.lib.storage import write_atomically

    settings = args.settings
    spec = load_spec(settings.spec_path)
    champion = _champion(settings, spec)
    if champion is None:
        from mlplatform.commands import command

        print(
            f"error: {spec.name!r} has no champion yet: run `{command('run', settings=settings)}` first",
            file=sys.stderr,
        )
        return 2
    image, note = _image(args.image, settings, champion)
    deployment = kubernetes.ModelDeployment(spec.name, image, champion, spec.deployment, namespace=args.namespace)
    if args.discover:
        from mlplatform.resources import kubernetes_api

        served, where = (
            kubernetes_api.served_group_versions(kubernetes_api.api_client(args.kubeconfig)),
            "the cluster's discovery",
        )
    elif args.kubernetes_version:
        served, where = kubernetes.served_in(args.kubernetes_version), f"Kubernetes {args.kubernetes_version}"
    else:
        served, where = None, "the newest (--discover asks a cluster)"
    versions = kubernetes.choose_api_versions(served) if served is not None else kubernetes.NEWEST
    for number, manifest in enumerate(kubernetes.manifests(deployment, versions), start=1):
        path = UPath(str(args.out)) / f"{number:02d}-{manifest['kind'].lower()}.yaml"
        write_atomically(path, yaml.safe_dump(manifest, sort_keys=False).encode())
        print(f"wrote {path}  ({manifest['apiVersion']} {manifest['kind']} {manifest['metadata']['name']})")
    print(f"  model   {champion}, image {image}")
    print(f"  APIs    {versions.autoscaling} and {versions.policy}, from {where}")
    secret = f"Secret {deployment.token_secret!r}, key {kubernetes.TOKEN_KEY!r}"
    print(f"  token   from {secret}: create it before applying; the manifests hold no token")
    if note:
        print(f"  NOTE    {note}")
    return 0


def _champion(settings, spec) -> str | None:
    from mlplatform.resources import ModelRegistry

    registry = ModelRegistry(bentoml_home=str(settings.bentoml_home), pointer_root=settings.artifact_root)
    champion = registry.for_project(spec.name).champion()
    return champion.tag if champion else None


def _image(given: str | None, settings, champion: str) -> tuple[str, str]:
    """The image to pin, and a note when it is a placeholder: the digest ``model_image`` recorded for the
    champion, else a digest of zeros, which no registry holds."""
    if given:
        return given, ""
    from mlplatform import summary
    from mlplatform.cli import instance

    with instance(settings) as project_instance:
        pushed = summary.latest_metadata(project_instance, "model_image")
    if pushed.get("model_tag") == champion:
        return str(pushed["digest"]), ""
    registry = settings.image_registry or "registry.invalid"
    why = f"the last image pushed serves {pushed['model_tag']}" if pushed else "no image has been pushed at all"
    return f"{registry}/predictor@{PLACEHOLDER_DIGEST}", (
        f"no image of the champion {champion} ({why}): the image is a PLACEHOLDER digest (all zeros), so these "
        "manifests cannot be applied as they are; set MLPLATFORM_REGISTRY and run the graph (model_image), or "
        "pass --image REPOSITORY@sha256:..."
    )
