"""The spec loader: the bundled example loads; a bad spec fails with a message naming the field and the value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlplatform.lib.spec import SpecError, default_spec_path, expand_env, load_spec

VALID_PROBLEM = {"task": "classification", "target": "species"}


def test_the_bundled_example_loads() -> None:
    spec = load_spec(default_spec_path())

    assert spec.name == "penguins"
    assert (spec.problem.task, spec.problem.target, spec.problem.primary_metric) == (
        "classification",
        "species",
        "f1_macro",
    )
    assert spec.problem.drop_columns == ("year",)
    assert spec.source.kind == "file"
    assert spec.resolve_path(spec.source.uri) == default_spec_path().parent / "penguins.csv"
    assert spec.resolve_path(spec.source.uri).is_file()
    assert (spec.split.holdout_fraction, spec.split.seed) == (0.2, 42)


@pytest.mark.parametrize(("task", "metric"), [("classification", "f1_macro"), ("regression", "rmse")])
def test_the_metric_defaults_by_task(spec_from, task: str, metric: str) -> None:
    spec = spec_from(problem={"task": task, "target": "body_mass_g"})

    assert spec.problem.primary_metric == metric


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("data/penguins.csv", "file"),
        ("file:///data/penguins.csv", "file"),
        ("s3://bucket/penguins/", "s3"),
        ("https://example.org/penguins.json", "http"),
        ("s3://${BUCKET}/penguins.csv", "s3"),
    ],
)
def test_the_source_kind_follows_the_scheme(spec_from, uri: str, kind: str) -> None:
    assert spec_from(source={"uri": uri}).source.kind == kind


def test_a_sql_source_with_a_query_loads(spec_from) -> None:
    spec = spec_from(source={"uri": "postgresql+psycopg2://${DB_USER}@db/penguins", "query": "select * from penguins"})

    assert (spec.source.kind, spec.source.query) == ("sql", "select * from penguins")


def test_relative_paths_are_relative_to_the_spec_file(tmp_path: Path, write_spec) -> None:
    spec = load_spec(write_spec(source={"uri": "data/penguins.csv"}))

    assert spec.resolve_path(spec.source.uri) == tmp_path / "data" / "penguins.csv"


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        pytest.param(
            {"problem": {"task": "clustering", "target": "species"}},
            ["problem.task", "'clustering'", "'classification' or 'regression'"],
            id="unknown task",
        ),
        pytest.param({"problem": {"task": "regression"}}, ["problem.target", "missing"], id="missing target"),
        pytest.param(
            {"problem": {"task": "regression", "target": "body_mass_g", "positive_class": "yes"}},
            ["positive_class 'yes' is for classification, not regression"],
            id="positive class for regression",
        ),
        pytest.param(
            {"problem": {**VALID_PROBLEM, "metric": "rmse"}},
            ["metric 'rmse'", "task 'classification'", "f1_macro"],
            id="regression metric for classification",
        ),
        pytest.param(
            {"problem": {"task": "regression", "target": "body_mass_g", "metric": "accuracy"}},
            ["metric 'accuracy'", "task 'regression'", "rmse"],
            id="classification metric for regression",
        ),
        pytest.param(
            {"problem": {**VALID_PROBLEM, "colour": "blue"}},
            ["problem.colour", "unknown field", "'blue'"],
            id="unknown field in a section",
        ),
        pytest.param({"owner": "ml-team"}, ["owner", "unknown field", "'ml-team'"], id="unknown top-level field"),
        pytest.param({"base_dir": "/data"}, ["base_dir", "unknown field", "'/data'"], id="base_dir is not for users"),
        pytest.param(
            {"source": {"uri": "ftp://example.org/penguins.csv"}},
            ["source.uri", "unknown scheme 'ftp'", "ftp://example.org/penguins.csv"],
            id="unknown URL scheme",
        ),
        pytest.param(
            {"source": {"uri": "s3:///penguins.csv"}},
            ["source.uri", "s3:///penguins.csv", "no bucket"],
            id="s3 URI without bucket",
        ),
        pytest.param(
            {"source": {"uri": "https:///penguins.csv"}},
            ["source.uri", "https:///penguins.csv", "no host"],
            id="http URL without host",
        ),
        pytest.param(
            {"source": {"uri": "sqlite:///penguins.db"}},
            ["source", "sqlite:///penguins.db", "needs a query"],
            id="SQL URL without query",
        ),
        pytest.param(
            {"source": {"uri": "penguins.csv", "query": "select 1"}},
            ["source", "query is only for SQL sources", "'penguins.csv'"],
            id="query on a file source",
        ),
        pytest.param(
            {"source": {"uri": "${DATABASE_URL}", "query": "select 1"}},
            ["query is only for SQL sources", "'${DATABASE_URL}'", "write the scheme"],
            id="scheme hidden in an environment variable",
        ),
        pytest.param(
            {"source": {"uri": "postgres://db/penguins", "query": "select 1"}},
            ["source.uri", "postgres://db/penguins", "postgresql://"],
            id="postgres alias SQLAlchemy 2 cannot load",
        ),
        pytest.param(
            {"problem": {**VALID_PROBLEM, "drop_columns": ["year", "species"]}},
            ["drop_columns", "target 'species'"],
            id="target in drop_columns",
        ),
        pytest.param(
            {"problem": {**VALID_PROBLEM, "id_column": "species"}},
            ["id_column 'species'", "target"],
            id="target as id column",
        ),
        pytest.param(
            {"source": {"uri": "penguins.csv", "format": "xlsx"}},
            ["source.format", "'xlsx'"],
            id="unknown format",
        ),
        pytest.param(
            {"split": {"holdout_fraction": 1.5}}, ["split.holdout_fraction", "1.5"], id="holdout fraction above 1"
        ),
        pytest.param({"source": {"uri": ""}}, ["source.uri", "''"], id="empty uri"),
        pytest.param({"problem": "classification"}, ["problem", "'classification'"], id="section not a mapping"),
        pytest.param(
            {"quality": {"max_unlabeled_fraction": 0.2, "columns": {"species": {"max_null_fraction": 0.1}}}},
            ["max_unlabeled_fraction (0.2)", "quality.columns.species.max_null_fraction (0.1)", "state it once"],
            id="unlabeled limit stated twice",
        ),
        pytest.param(
            {"quality": {"max_unlabeled_fraction": 1.5}},
            ["quality.max_unlabeled_fraction", "1.5"],
            id="unlabeled fraction above 1",
        ),
        pytest.param({"quality": {"profile": {"mostly": 0}}}, ["quality.profile.mostly", "0"], id="profile mostly 0"),
        pytest.param(
            {"quality": {"columns": {"island": {"mostly": 1.2}}}},
            ["quality.columns.island.mostly", "1.2"],
            id="column mostly above 1",
        ),
        pytest.param(
            {"deployment": {"cpu": "half"}}, ["deployment.cpu", "'half' is not a Kubernetes quantity"], id="bad cpu"
        ),
        pytest.param(
            {"deployment": {"memory": "2Gi", "memory_limit": "1Gi"}},
            ["deployment", "memory '2Gi' is more than memory_limit '1Gi'"],
            id="request above limit",
        ),
        pytest.param(
            {"deployment": {"replicas": 5, "max_replicas": 4}},
            ["deployment", "min_replicas (2) <= replicas (5) <= max_replicas (4)"],
            id="replicas above the autoscaler's maximum",
        ),
        pytest.param(
            {"deployment": {"node_port": 30080}},
            ["deployment", "node_port 30080 needs service_type NodePort"],
            id="node port on a ClusterIP service",
        ),
        pytest.param(
            {"deployment": {"service_type": "LoadBalancer"}},
            ["deployment.service_type", "'LoadBalancer'"],
            id="unsupported service type",
        ),
    ],
)
def test_a_bad_spec_names_the_field_and_the_value(write_spec, sections: dict, expected: list[str]) -> None:
    path = write_spec(**sections)

    with pytest.raises(SpecError) as raised:
        load_spec(path)

    message = str(raised.value)
    assert message.startswith(f"{path}: invalid spec")
    for fragment in expected:
        assert fragment in message


@pytest.mark.parametrize("name", ["My Penguins", "1penguins", "", "p" * 64])
def test_a_project_name_must_be_a_slug(tmp_path: Path, name: str) -> None:
    """The name becomes part of artifact paths and model tags."""
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": name, "problem": VALID_PROBLEM, "source": {"uri": "penguins.csv"}}))

    with pytest.raises(SpecError) as raised:
        load_spec(path)

    assert "name: String should match pattern" in str(raised.value)
    assert f"(got {name!r})" in str(raised.value)


def test_every_problem_is_reported_at_once(write_spec) -> None:
    path = write_spec(problem={"task": "clustering"}, source={"uri": "ftp://x/y.csv"})

    with pytest.raises(SpecError) as raised:
        load_spec(path)

    message = str(raised.value)
    assert "problem.task" in message
    assert "problem.target: required field is missing" in message
    assert "source.uri" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("- name: penguins\n- problem: {}\n", "must be a mapping of fields, got list", id="a list"),
        pytest.param("just some words\n", "must be a mapping of fields, got str", id="a string"),
        pytest.param("", "must be a mapping of fields, got NoneType", id="an empty file"),
        pytest.param("name: penguins\nproblem: {task: [unclosed\n", "not valid YAML", id="invalid YAML"),
        pytest.param("name: penguins\n\tproblem: {}\n", "not valid YAML", id="tab indentation"),
    ],
)
def test_a_file_that_is_not_a_spec_document(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)

    with pytest.raises(SpecError) as raised:
        load_spec(path)

    assert str(raised.value).startswith(str(path))
    assert expected in str(raised.value)


def test_a_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"\xff\xfe\x00name")

    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)


def test_a_missing_spec_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "spec.yaml"

    with pytest.raises(SpecError) as raised:
        load_spec(path)

    assert str(raised.value) == f"{path}: spec file not found"


def test_a_folder_is_not_a_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path)


def test_the_spec_is_immutable(spec_from) -> None:
    spec = spec_from()

    with pytest.raises(ValueError, match="frozen"):
        spec.problem.target = "island"  # type: ignore[misc]


def test_the_example_round_trips_through_yaml(tmp_path: Path) -> None:
    """What model_dump writes, load_spec reads back identically (base_dir aside: it is not user-written)."""
    spec = load_spec(default_spec_path())
    copy = tmp_path / "copy.yaml"
    document = spec.model_dump(mode="json")
    document["source"]["uri"] = str(spec.resolve_path(spec.source.uri))
    copy.write_text(yaml.safe_dump(document))

    reloaded = load_spec(copy)

    assert reloaded.problem == spec.problem
    assert reloaded.split == spec.split
    assert reloaded.resolve_path(reloaded.source.uri) == spec.resolve_path(spec.source.uri)


class TestExpandEnv:
    def test_variables_are_replaced(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TOKEN", "s3cret")
        monkeypatch.setenv("HOST", "api.example.org")

        assert expand_env("https://${HOST}/x?t=${TOKEN}", "source.uri") == "https://api.example.org/x?t=s3cret"

    def test_an_empty_value_is_allowed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SUFFIX", "")

        assert expand_env("table${SUFFIX}", "source.uri") == "table"

    def test_text_without_references_is_unchanged(self) -> None:
        assert expand_env("Bearer $TOKEN {x}", "source.headers.Authorization") == "Bearer $TOKEN {x}"

    def test_an_unset_variable_names_the_field_and_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("MLPLATFORM_TEST_UNSET", raising=False)

        with pytest.raises(SpecError) as raised:
            expand_env("Bearer ${MLPLATFORM_TEST_UNSET}", "source.headers.Authorization")

        assert str(raised.value) == (
            "source.headers.Authorization: environment variable MLPLATFORM_TEST_UNSET is not set "
            "(referenced as ${MLPLATFORM_TEST_UNSET})"
        )


def test_the_deployment_section_sizes_the_pods(spec_from) -> None:
    default = spec_from().deployment
    # YAML reads `cpu: 1` as a number; Kubernetes wants the quantity as text
    sized = spec_from(deployment={"replicas": 3, "max_replicas": 6, "cpu": 1, "cpu_limit": 2, "memory": "768Mi"})

    assert (default.replicas, default.min_replicas, default.max_replicas, default.service_type) == (
        2,
        2,
        4,
        "ClusterIP",
    )
    assert load_spec(default_spec_path()).deployment == default
    assert (sized.deployment.replicas, sized.deployment.cpu, sized.deployment.cpu_limit) == (3, "1", "2")
    assert (sized.deployment.memory, sized.deployment.memory_limit) == ("768Mi", "1Gi")


def test_training_resources_size_each_search_pod_and_leave_the_model_alone(spec_from) -> None:
    from mlplatform.lib.registry.registry import spec_hash

    training = {"candidates": {"linear": {"estimator": "logistic_regression", "trials": 2}}}
    plain = spec_from(training=training)
    sized = spec_from(training={**training, "resources": {"cpu": 2, "memory": "3Gi"}})

    assert plain.training.resources is None
    assert (sized.training.resources.cpu, sized.training.resources.memory) == ("2", "3Gi")
    assert spec_hash(sized) == spec_hash(plain)  # where a search runs is not what it makes
    with pytest.raises(SpecError, match=r"training.resources.memory: .*'lots' is not a Kubernetes quantity"):
        spec_from(training={**training, "resources": {"memory": "lots"}})
