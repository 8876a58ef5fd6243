"""API discovery through the ``kubernetes`` client, against a real HTTP server answering /api and /apis as a
v1.20 API server does (and as a current one does), reached through a kubeconfig with a bearer token."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from mlplatform.lib.deployment import kubernetes
from mlplatform.resources import kubernetes_api
from mlplatform_tests.lib.deployment.test_kubernetes import SERVED_1_20, SERVED_1_31
from mlplatform_tests.servers import HTTPTestServer, free_port

TOKEN = "discovery-token"


def discovery_documents(served: list[str]) -> tuple[dict, dict]:
    """The /api and /apis answers of an API server serving these group versions (core "v1" first)."""
    groups = defaultdict(list)
    for group_version in served:
        if "/" in group_version:
            groups[group_version.split("/")[0]].append(group_version)
    everywhere = [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:443"}]
    core = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": everywhere}
    apis = {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": name,
                "versions": [{"groupVersion": v, "version": v.split("/")[1]} for v in versions],
                "preferredVersion": {"groupVersion": versions[0], "version": versions[0].split("/")[1]},
            }
            for name, versions in groups.items()
        ],
    }
    return core, apis


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": server}}],
                "users": [{"name": "test", "user": {"token": TOKEN}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                "current-context": "test",
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("served", "expected"),
    [
        (SERVED_1_20, kubernetes.ApiVersions(autoscaling="autoscaling/v2beta2", policy="policy/v1beta1")),
        (SERVED_1_31, kubernetes.NEWEST),
    ],
    ids=["v1.20", "v1.31"],
)
def test_discovery_lists_what_the_api_server_serves(tmp_path: Path, served: list[str], expected) -> None:
    core, apis = discovery_documents(served)
    with HTTPTestServer() as server:
        for path, document in (("/api/", core), ("/apis/", apis)):
            server.route(
                path, json.dumps(document), "application/json", required_headers={"Authorization": f"Bearer {TOKEN}"}
            )
        api = kubernetes_api.api_client(str(kubeconfig(tmp_path / "kubeconfig", server.base_url)))
        found = kubernetes_api.served_group_versions(api)

    assert sorted(found) == sorted(served)
    assert kubernetes.choose_api_versions(found) == expected


def test_an_api_server_that_does_not_answer_is_named(tmp_path: Path) -> None:
    address = f"http://127.0.0.1:{free_port()}"
    api = kubernetes_api.api_client(str(kubeconfig(tmp_path / "kubeconfig", address)))
    api.configuration.retries = False  # one refused connection says it all

    with pytest.raises(kubernetes_api.ClusterError, match=f"API discovery at {address} failed"):
        kubernetes_api.served_group_versions(api)


def test_a_missing_kubeconfig_is_named(tmp_path: Path) -> None:
    with pytest.raises(kubernetes_api.ClusterError, match="kubeconfig .*nowhere"):
        kubernetes_api.api_client(str(tmp_path / "nowhere"))
