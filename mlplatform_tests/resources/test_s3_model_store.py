"""The cloud registry against moto's S3 server over HTTP: model versions exported to the bucket and imported by a
process with an empty BentoML home, and a champion pointer that two promotions at once cannot both move."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest

from mlplatform.lib.data import cleaning
from mlplatform.lib.registry.registry import ChampionMoved, Promotion, Registry
from mlplatform.resources.model_store import ExportedModelStore
from mlplatform.resources.object_storage import configure_object_storage
from mlplatform.resources.registry import ModelRegistry
from mlplatform.settings import Settings
from mlplatform_tests.conftest import BENTOML_HOME
from mlplatform_tests.models import fitted, save_version

pytestmark = pytest.mark.slow
PREFIX = "team-b"


@pytest.fixture
def cloud(s3_bucket, tmp_path: Path) -> Settings:
    settings = Settings.from_env(
        {
            "MLPLATFORM_ENV": "cloud",
            "MLPLATFORM_BUCKET": s3_bucket.name,
            "MLPLATFORM_PREFIX": PREFIX,
            "MLPLATFORM_HOME": str(tmp_path / "home"),
            "BENTOML_HOME": str(BENTOML_HOME),
        }
    )
    configure_object_storage(settings)  # as every entry point does
    return settings


@pytest.fixture
def trained(spec_from, penguins: pd.DataFrame):
    spec = spec_from()
    training, _ = cleaning.clean(penguins, spec)
    return spec, fitted(training, spec), training


def keys(s3_bucket) -> list[str]:
    listing = s3_bucket.server.client().list_objects_v2(Bucket=s3_bucket.name)
    return [item["Key"] for item in listing.get("Contents", [])]


def test_a_model_stored_by_one_process_is_loaded_by_another_with_an_empty_bentoml_home(
    cloud: Settings, s3_bucket, trained, tmp_path: Path
) -> None:
    spec, model, training = trained
    models = ModelRegistry.for_settings(cloud).for_project(spec.name)
    assert isinstance(models.store, ExportedModelStore)  # chosen by the settings' values
    version = save_version(models, spec, model, training)
    _, stored_version = version.tag.split(":")
    archive = f"{PREFIX}/models/{spec.name}/{stored_version}.tar.gz"
    assert set(keys(s3_bucket)) == {archive, archive.replace(".tar.gz", ".json")}
    assert s3_bucket.server.client().head_object(Bucket=s3_bucket.name, Key=archive)["ServerSideEncryption"] == (
        "AES256"
    )

    empty_home = tmp_path / "other-machine" / "bentoml"
    rows = training.drop(columns=[spec.problem.target]).head(20)
    script = textwrap.dedent(
        """
        import json, sys
        import pandas as pd
        from mlplatform.resources.registry import ModelRegistry
        from mlplatform.settings import Settings

        models = ModelRegistry.for_settings(Settings.from_env()).for_project(sys.argv[1])
        print(json.dumps({
            "versions": [v.tag for v in models.versions()],
            "predictions": models.load(sys.argv[2]).model.pipeline.predict(pd.read_json(sys.stdin)).tolist(),
            "local_path": str(models.local_path(sys.argv[2])),
        }))
        """
    )
    environment = {
        **os.environ,
        "MLPLATFORM_ENV": "cloud",
        "MLPLATFORM_BUCKET": s3_bucket.name,
        "MLPLATFORM_PREFIX": PREFIX,
        "MLPLATFORM_HOME": str(tmp_path / "other-machine"),
        "BENTOML_HOME": str(empty_home),
    }
    answer = subprocess.run(
        [sys.executable, "-c", script, spec.name, version.tag],
        input=rows.to_json(orient="records"),
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert answer.returncode == 0, answer.stderr
    loaded = json.loads(answer.stdout)
    assert loaded["versions"] == [version.tag]
    assert loaded["predictions"] == model.pipeline.predict(rows).tolist()
    # imported into the other process's own BentoML home, which held nothing before
    assert (empty_home / "models" / spec.name / stored_version / "model.joblib").is_file()
    assert loaded["local_path"] == str(empty_home / "models" / spec.name / stored_version)


def test_a_long_running_process_sees_versions_other_processes_stored(cloud: Settings, s3_bucket, trained) -> None:
    spec, model, training = trained
    models = ModelRegistry.for_settings(cloud).for_project(spec.name)
    first = save_version(models, spec, model, training)
    assert [v.tag for v in models.versions()] == [first.tag]
    # another process stores a version: its description appears in the bucket, written by another client
    client = s3_bucket.server.client()
    _, version = first.tag.split(":")
    described = json.loads(
        client.get_object(Bucket=s3_bucket.name, Key=f"{PREFIX}/models/penguins/{version}.json")["Body"].read()
    )
    other = {**described, "tag": "penguins:zzzotherprocess", "created": "2999-01-01T00:00:00+00:00"}
    client.put_object(
        Bucket=s3_bucket.name, Key=f"{PREFIX}/models/penguins/zzzotherprocess.json", Body=json.dumps(other)
    )

    assert [v.tag for v in models.versions()] == [first.tag, "penguins:zzzotherprocess"]


def test_two_promotions_at_once_never_both_win(cloud: Settings, s3_bucket, trained) -> None:
    spec, model, training = trained
    models = ModelRegistry.for_settings(cloud).for_project(spec.name)
    tags = [save_version(models, spec, model, training).tag for _ in range(2)]
    rounds = 6
    won: list[Promotion] = []
    conflicts: list[str] = []

    for round_number in range(rounds):
        before = won[-1].tag if won else None
        start = threading.Barrier(2)
        outcomes: dict[str, Promotion | Exception] = {}

        def promote(tag: str, registry: Registry, outcome: dict = outcomes, barrier=start) -> None:
            barrier.wait()
            try:
                outcome[tag] = registry.promote(tag, kind="manual", by=f"thread {tag}", reason="race")
            except ChampionMoved as exc:
                outcome[tag] = exc

        # each promotion through its own registry, as two processes would have
        threads = [
            threading.Thread(target=promote, args=(tag, ModelRegistry.for_settings(cloud).for_project(spec.name)))
            for tag in tags
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        succeeded = [outcome for outcome in outcomes.values() if isinstance(outcome, Promotion)]
        failed = [outcome for outcome in outcomes.values() if isinstance(outcome, Exception)]
        assert len(outcomes) == 2 and succeeded, f"round {round_number}: {outcomes}"
        if failed:
            assert len(succeeded) == 1 and "the champion moved to" in str(failed[0]), outcomes
            conflicts.append(str(failed[0]))
        else:  # one after the other, the second moving the champion the first set
            a, b = succeeded
            succeeded = [a, b] if b.previous == a.tag and a.previous == before else [b, a]
        assert [promotion.previous for promotion in succeeded] == [before, *[p.tag for p in succeeded[:-1]]], (
            f"round {round_number}: both won from the same champion: {succeeded}"
        )
        won.extend(succeeded)
        assert models.champion() == won[-1]

    # never two winners from one champion: every promotion that won moved the champion the one before it set
    assert [promotion.previous for promotion in won] == [None, *[promotion.tag for promotion in won[:-1]]]
    assert models.history() == won  # the losers left no line
    assert conflicts, f"in {rounds} rounds the two promotions never overlapped: the race was not tested"
