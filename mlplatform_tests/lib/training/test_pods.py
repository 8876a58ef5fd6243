"""A candidate's own pod (``training.candidates.<name>.resources.pod``): the spec section, the pod PipesK8sClient
is given (built by dagster-k8s itself and checked against the Kubernetes v1.20 schema), what the pod is given of
the environment, and the search the pod runs, here on local paths."""

from __future__ import annotations

import kubernetes
import kubernetes_validate
import pytest
from dagster_k8s.pipes import build_pod_body
from upath import UPath

from mlplatform.lib.features import features as feature_lib
from mlplatform.lib.spec import ProjectSpec, SpecError
from mlplatform.lib.training import candidates, pods
from mlplatform.settings import Settings

GPU_POD = {
    "image": "registry.example/mlplatform-gpu:1",
    "cpu": 2,
    "memory": "6Gi",
    "gpu": 1,
    "node_selector": {"accelerator": "nvidia-t4"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "service_account": "trainer",
    "env_from_secrets": ["s3-credentials"],
}


def with_pod(spec_from, pod: object) -> ProjectSpec:
    return spec_from(
        training={
            "candidates": {
                "linear": {"estimator": "logistic_regression", "trials": 2},
                "boosted": {"estimator": "hist_gradient_boosting", "trials": 2, "resources": {"pod": pod}},
            }
        }
    )


def test_a_candidate_may_ask_for_a_pod_of_its_own(spec_from) -> None:
    spec = with_pod(spec_from, GPU_POD)

    pod = spec.training.candidates["boosted"].resources.pod
    assert (pod.image, pod.cpu, pod.memory, pod.gpu) == ("registry.example/mlplatform-gpu:1", "2", "6Gi", 1)
    assert pod.node_selector == {"accelerator": "nvidia-t4"}
    assert spec.training.candidates["linear"].resources.pod is None  # searched in the step's own process


@pytest.mark.parametrize(
    ("pod", "message"),
    [
        ({"cpu": "two"}, r"training\.candidates\.boosted\.resources\.pod\.cpu: 'two' is not a Kubernetes quantity"),
        ({"memory": "6 GB"}, r"resources\.pod\.memory: '6 GB' is not a Kubernetes quantity"),
        ({"gpu": -1}, r"resources\.pod\.gpu: Input should be greater than or equal to 0"),
        ({"gpus": 1}, r"resources\.pod\.gpus: unknown field"),
        ({"tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]}, r"operator Exists takes no value"),
        ({"tolerations": [{"value": "yes"}]}, r"a toleration without a key must use operator Exists"),
    ],
)
def test_a_wrong_pod_entry_names_its_field(spec_from, pod: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        with_pod(spec_from, pod)


def test_the_spec_travels_to_the_pod_as_json_unchanged(spec_from) -> None:
    spec = with_pod(spec_from, GPU_POD)

    arrived = ProjectSpec.model_validate(pods.extras("boosted", spec, UPath("s3://b/in"), UPath("s3://b/out"))["spec"])

    assert arrived.model_dump() == spec.model_dump()


def built_pod(pod_spec: dict, meta: dict) -> dict:
    """The pod as PipesK8sClient.run creates it, from dagster-k8s's own builder, as the API server receives it."""
    body = build_pod_body(
        pod_name="dagster-run-boosted-1",
        image="registry.example/mlplatform:1",
        command=list(pods.COMMAND),
        env_vars={"DAGSTER_PIPES_CONTEXT": "e30=", "MLPLATFORM_S3_SSE": "aws:kms"},
        base_pod_meta=meta,
        base_pod_spec=pod_spec,
    )
    return kubernetes.client.ApiClient().sanitize_for_serialization(body)


def test_the_pod_asks_for_its_resources_and_node_and_runs_locked_down(spec_from) -> None:
    spec = with_pod(spec_from, GPU_POD)

    pod = built_pod(
        pods.pod_spec(spec.training.candidates["boosted"].resources.pod), pods.pod_metadata("penguins", "boosted")
    )

    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", **pod}, "1.20", strict=True)
    [container] = pod["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "6Gi"},
        "limits": {"memory": "6Gi", "nvidia.com/gpu": "1"},
    }
    assert container["command"] == ["python", "-m", "mlplatform.pods.tune_candidate"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert {"name": "MLPLATFORM_S3_SSE", "value": "aws:kms"} in container["env"]
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["volumeMounts"] == [{"name": "scratch", "mountPath": "/tmp"}]
    assert pod["spec"]["nodeSelector"] == {"accelerator": "nvidia-t4"}
    assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (pod["spec"]["serviceAccountName"], pod["spec"]["restartPolicy"]) == ("trainer", "Never")
    assert pod["spec"]["automountServiceAccountToken"] is False
    labels = pod["metadata"]["labels"]
    assert (labels["mlplatform/candidate"], labels["mlplatform/project"]) == ("boosted", "penguins")
    assert labels["app.kubernetes.io/part-of"] == "mlplatform"


def test_a_pod_with_nothing_asked_for_gets_no_resources_or_placement(spec_from) -> None:
    spec = with_pod(spec_from, {})

    pod = built_pod(pods.pod_spec(spec.training.candidates["boosted"].resources.pod), pods.pod_metadata("p", "b"))

    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", **pod}, "1.20", strict=True)
    assert "resources" not in pod["spec"]["containers"][0]
    assert "envFrom" not in pod["spec"]["containers"][0]
    assert not {"nodeSelector", "tolerations", "serviceAccountName"} & set(pod["spec"])


@pytest.mark.parametrize(
    ("text", "label"), [("boosted", "boosted"), ("my project/2", "my-project-2"), ("_x" + "y" * 80, "x" + "y" * 61)]
)
def test_label_values_are_what_kubernetes_accepts(text: str, label: str) -> None:
    assert pods.label_value(text) == label


def test_the_pod_gets_where_s3_is_and_how_to_encrypt_but_no_credential() -> None:
    settings = Settings.from_env(
        {
            "MLPLATFORM_ENV": "cloud",
            "MLPLATFORM_BUCKET": "models",
            "MLPLATFORM_S3_SSE": "aws:kms",
            "MLPLATFORM_S3_KMS_KEY_ID": "alias/mlplatform",
            "AWS_ENDPOINT_URL_S3": "http://10.244.0.1:9000",
            "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "secret-value",
            "AWS_SESSION_TOKEN": "session-value",
            "MLPLATFORM_POD_NAMESPACE": "training",
            "DAGSTER_CURRENT_IMAGE": "registry.example/mlplatform:abc",
        }
    )

    assert settings.pod_environment == {
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_S3": "http://10.244.0.1:9000",
        "MLPLATFORM_ENV": "cloud",
        "MLPLATFORM_BUCKET": "models",
        "MLPLATFORM_S3_SSE": "aws:kms",
        "MLPLATFORM_S3_KMS_KEY_ID": "alias/mlplatform",
    }
    assert (settings.pod_image, settings.pod_namespace) == ("registry.example/mlplatform:abc", "training")
    assert Settings.from_env({"MLPLATFORM_POD_IMAGE": "mine:1", "DAGSTER_CURRENT_IMAGE": "run:1"}).pod_image == "mine:1"


def test_the_pods_search_is_the_steps_search(spec_from, penguins, tmp_path) -> None:
    spec = with_pod(spec_from, {})
    training = penguins.dropna(subset=["species"]).drop(columns=["year"])
    pipeline = feature_lib.fit_feature_pipeline(training, spec)
    features, target = candidates.transformed(pipeline, training), training["species"]
    inputs, output = UPath(tmp_path / "inputs.joblib"), UPath(tmp_path / "candidate.joblib")
    pods.write_inputs(inputs, features, target)

    tuned, report = pods.search(pods.extras("boosted", spec, inputs, output))

    in_step = candidates.tune("boosted", spec.training.candidates["boosted"], features, target, spec, threads=1)
    assert (tuned.cv_score, tuned.best_params, tuned.trials) == (in_step.cv_score, in_step.best_params, 2)
    stored = pods.read_joblib(output)
    assert (stored.name, stored.cv_score) == ("boosted", in_step.cv_score)
    assert report["cv_score"] == in_step.cv_score and report["model"] == str(output)
    assert report["trials"] == 2 and report["threads"] == 1


def test_a_candidate_the_spec_does_not_name_is_refused_in_the_pod(spec_from, tmp_path) -> None:
    spec = with_pod(spec_from, {})

    with pytest.raises(candidates.CandidateError, match=r"no 'forest' \(it has boosted, linear\)"):
        pods.search({**pods.extras("forest", spec, UPath(tmp_path / "in"), UPath(tmp_path / "out"))})
