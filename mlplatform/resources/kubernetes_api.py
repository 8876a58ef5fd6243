"""A Kubernetes cluster's API discovery, through the ``kubernetes`` client: which group versions it serves.
The choice among them is pure (``mlplatform.lib.deployment.kubernetes.choose_api_versions``); only the asking
is here. Dagster-free."""

from __future__ import annotations

import urllib3
from kubernetes import client, config


class ClusterError(RuntimeError):
    """No cluster to ask (no kubeconfig, not in a pod), or it did not answer; the message says which."""


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """A client for the cluster ``kubeconfig`` (default: $KUBECONFIG or ~/.kube/config) names, or, inside a pod,
    for the cluster it runs in."""
    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except config.ConfigException as outside:
        if kubeconfig is not None:
            raise ClusterError(f"kubeconfig {kubeconfig}: {outside}") from None
        try:
            config.load_incluster_config()
        except config.ConfigException:
            raise ClusterError(
                f"no cluster to ask: no kubeconfig ($KUBECONFIG or ~/.kube/config: {outside}) and not in a pod"
            ) from None
        return client.ApiClient()


def served_group_versions(api: client.ApiClient) -> list[str]:
    """Every group version the API server serves, as ``group/version`` ("autoscaling/v2", "policy/v1beta1"),
    with the core group's as a bare version ("v1"): what `kubectl api-versions` lists."""
    try:
        core = client.CoreApi(api).get_api_versions().versions
        groups = client.ApisApi(api).get_api_versions().groups
    except (client.ApiException, urllib3.exceptions.HTTPError) as exc:
        raise ClusterError(f"API discovery at {api.configuration.host} failed: {exc}") from None
    return [*core, *(version.group_version for group in groups for version in group.versions)]
