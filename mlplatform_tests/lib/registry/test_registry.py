"""The registry: models in a real BentoML model store (the session's home), lineage labels, the champion pointer."""

import json
from pathlib import Path

import pandas as pd
import pytest

from mlplatform.lib.data import cleaning
from mlplatform.lib.features import features
from mlplatform.lib.monitoring.reference import reference_sample
from mlplatform.lib.registry import registry
from mlplatform.lib.registry.registry import Registry, RegistryError
from mlplatform.resources.model_store import BentoMLStore
from mlplatform_tests.conftest import BENTOML_HOME
from mlplatform_tests.models import fitted


@pytest.fixture
def trained(spec_from, penguins: pd.DataFrame):
    spec = spec_from()
    training, _ = cleaning.clean(penguins, spec)
    model = fitted(training, spec)
    schema = features.input_schema(model.pipeline.named_steps["features"], training, spec, model.classes)
    return spec, model, schema, training


@pytest.fixture
def models(tmp_path: Path) -> Registry:
    return Registry(BentoMLStore(BENTOML_HOME), str(tmp_path / "artifacts"), "penguins")


def store(models: Registry, trained, run_id: str = "run-1", data_version: str = "d1") -> registry.ModelVersion:
    spec, model, schema, training = trained
    metrics = {"f1_macro": 0.91234567, "accuracy": 0.95}
    labels = registry.lineage_labels(spec=spec, data_version=data_version, run_id=run_id, metrics=metrics, model=model)
    rows = features.RowIds.of(training, spec)
    return models.save(
        model,
        schema=schema,
        labels=labels,
        metrics=metrics,
        training_rows=rows,
        reference=reference_sample(model, training, schema),
    )


def test_a_saved_model_carries_its_lineage(models: Registry, trained) -> None:
    spec = trained[0]

    version = store(models, trained)

    assert version.tag.startswith("penguins:")
    labels = version.labels
    assert labels["data_version"] == "d1" and labels["dagster_run_id"] == "run-1"
    assert labels["spec_hash"] == registry.spec_hash(spec) and len(labels["spec_hash"]) == 16
    assert labels["code_version"] == registry.code_version()
    assert labels["code_version"].startswith(("git:", "src:"))
    assert labels["estimator"] == "LogisticRegression"
    assert labels["metric.f1_macro"] == "0.912346" and labels["primary_metric"] == "f1_macro"
    assert labels["trained_at"].endswith("+00:00")
    assert version.metrics == {"f1_macro": 0.91234567, "accuracy": 0.95}  # full precision in the metadata
    assert (BENTOML_HOME / "models" / "penguins").is_dir()  # BentoML's own layout, in our home


def test_a_loaded_model_predicts_like_the_one_saved(models: Registry, trained) -> None:
    _, model, schema, training = trained
    version = store(models, trained)

    loaded = models.load(version.tag)

    rows = training.head(20)
    assert loaded.model.pipeline.predict(rows).tolist() == model.pipeline.predict(rows).tolist()
    assert loaded.schema == schema
    assert {c["name"] for c in loaded.schema["columns"]} == {
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
    }
    island = next(c for c in loaded.schema["columns"] if c["name"] == "island")
    assert island == {
        "name": "island",
        "nullable": True,
        "kind": "category",
        "type": "string",
        "categories": ["Biscoe", "Dream", "Torgersen"],
    }


def test_the_spec_hash_ignores_layout_and_follows_meaning(spec_from, write_spec, tmp_path: Path) -> None:
    from mlplatform.lib.spec import load_spec

    plain = spec_from()
    same = load_spec(write_spec("other.yaml"))
    changed = spec_from(split={"seed": 7})

    assert registry.spec_hash(plain) == registry.spec_hash(same) != registry.spec_hash(changed)


def test_where_a_candidate_searches_is_not_part_of_the_spec_hash(spec_from) -> None:
    def with_forest(**forest: object):
        candidates = {"forest": {"estimator": "random_forest", "trials": 2, **forest}}
        return registry.spec_hash(spec_from(training={"candidates": candidates}))

    in_step = with_forest()

    # a pod of its own makes the same model (seeded; mlplatform_tests/defs/test_candidate_pods.py shows it)
    assert with_forest(resources={"pod": {"image": "gpu:1", "cpu": 4, "gpu": 1}}) == in_step
    assert with_forest(resources={}) == in_step
    assert with_forest(trials=3) != in_step


@pytest.mark.parametrize("tag", ["penguins:latest", "penguins"])
def test_latest_or_an_unpinned_tag_is_refused(models: Registry, trained, tag: str) -> None:
    store(models, trained)

    with pytest.raises(RegistryError, match="name a version"):
        models.load(tag)


def test_an_unknown_tag_is_named_with_what_exists(models: Registry, trained) -> None:
    version = store(models, trained)

    with pytest.raises(RegistryError, match=rf"'penguins:nope' is not in the store .* \(latest: {version.tag}\)"):
        models.load("penguins:nope")


def test_promotions_move_the_pointer_and_keep_a_history(models: Registry, trained) -> None:
    first, second = store(models, trained, "run-1"), store(models, trained, "run-2")
    assert models.champion() is None
    assert [v.tag for v in models.versions()] == [first.tag, second.tag]

    models.promote(first.tag, kind="gate", by="gate", reason="first model")
    models.promote(second.tag, kind="manual", by="ana", reason="better on the new data")

    assert models.champion().tag == second.tag
    assert models.champion().previous == first.tag
    assert models.rollback_target() == first.tag
    models.promote(models.rollback_target(), kind="rollback", by="ana", reason="second misbehaves")
    history = models.history()
    assert [(p.tag, p.kind, p.by) for p in history] == [
        (first.tag, "gate", "gate"),
        (second.tag, "manual", "ana"),
        (first.tag, "rollback", "ana"),
    ]
    assert history[-1].reason == "second misbehaves"
    assert models.champion().tag == first.tag


def test_a_promotion_that_stopped_before_its_history_line_is_still_in_the_history(models: Registry, trained) -> None:
    first, second = store(models, trained, "run-1"), store(models, trained, "run-2")
    models.promote(first.tag, kind="gate", by="gate", reason="first model")
    log = models.pointer_folder / "history.jsonl"
    kept = log.read_bytes()
    models.promote(second.tag, kind="manual", by="ana", reason="better")
    log.write_bytes(kept)  # as if the process had died after moving the pointer, before writing the history

    assert [p.tag for p in models.history()] == [first.tag, second.tag]  # the pointer holds the whole record
    models.promote(first.tag, kind="rollback", by="ana", reason="second misbehaves")

    recorded = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(line["tag"], line["previous"], line["kind"]) for line in recorded] == [
        (first.tag, None, "gate"),
        (second.tag, first.tag, "manual"),
        (first.tag, second.tag, "rollback"),
    ]
    assert len({line["id"] for line in recorded}) == 3


def test_a_change_of_champion_needs_a_reason_and_an_existing_model(models: Registry, trained) -> None:
    version = store(models, trained)

    with pytest.raises(RegistryError, match="say why"):
        models.promote(version.tag, kind="manual", by="ana", reason="  ")
    with pytest.raises(RegistryError, match="not in the store"):
        models.promote("penguins:nope", kind="manual", by="ana", reason="x")
    assert models.champion() is None and models.history() == []


def test_nothing_to_roll_back_to(models: Registry, trained) -> None:
    with pytest.raises(RegistryError, match="no champion to roll back from"):
        models.rollback_target()
    models.promote(store(models, trained).tag, kind="gate", by="gate", reason="first")
    with pytest.raises(RegistryError, match="is the first champion"):
        models.rollback_target()


def test_a_version_keeps_the_ids_of_its_training_rows(models: Registry, trained) -> None:
    spec, _, _, training = trained

    version = store(models, trained)

    kept = models.training_rows(version.tag)
    assert kept.values.dtype == "uint64"
    assert kept.values.tolist() == sorted(set(features.row_ids(training, spec).tolist()))
    assert kept.basis == features.row_id_basis(training, spec)
    assert kept.basis.startswith(f"{features.ROW_ID_SCHEME}: content of {training.shape[1]} columns")
    folder = BENTOML_HOME / "models" / "penguins" / version.tag.split(":")[1]
    assert (folder / registry.TRAINING_ROWS_FILE).is_file()  # inside the BentoML model, so it travels with it


def test_a_version_stored_before_row_ids_were_kept_has_none(models: Registry, trained) -> None:
    version = store(models, trained)
    (BENTOML_HOME / "models" / "penguins" / version.tag.split(":")[1] / registry.TRAINING_ROWS_FILE).unlink()

    assert models.training_rows(version.tag) is None


def test_versions_are_in_the_order_they_were_stored_not_by_tag(models: Registry) -> None:
    """Saved within the same second, "zz" before "aa": ordered by the time cut to the second and then by tag,
    "aa" came first (as random tags did about one time in six). BentoML keeps the microseconds."""
    for version in ("zz", "mm", "aa"):
        with models.store.create(f"penguins:{version}", labels={"data_version": version}, metadata={}):
            pass

    assert [v.tag for v in models.versions()] == ["penguins:zz", "penguins:mm", "penguins:aa"]
