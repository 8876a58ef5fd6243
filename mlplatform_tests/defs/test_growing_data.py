"""Two batches land one after the other and the model is retrained on the grown data (issue #10, finding 3).

The data is a noisy nonlinear regression on which a random forest trained on the first batch alone overfits and
more data genuinely helps. On the rows the champion learned from, it predicts far better than on new rows, so a
gate that let those rows into the comparison would favour it; the gate must compare both models only on holdout
rows neither trained on, and there the challenger is better."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from mlplatform.definitions import MATERIALIZE_ALL, build_definitions
from mlplatform.lib.evaluation import evaluation
from mlplatform.lib.features import features
from mlplatform.lib.registry.registry import Registry
from mlplatform.lib.spec import load_spec
from mlplatform.resources.model_store import BentoMLStore
from mlplatform.settings import Settings
from mlplatform_tests.conftest import BENTOML_HOME
from mlplatform_tests.defs.test_models import gate

# Full-depth trees: they memorise the rows they are fitted on, the overfitting that more data cures.
FOREST = {"forest": {"estimator": "random_forest", "trials": 1, "params": {"n_estimators": 50}, "search": {}}}


def noisy_nonlinear(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2, x3 = (rng.uniform(0, 10, rows) for _ in range(3))
    y = 10 * np.sin(x1) + (x2 - 5) ** 2 / 2 + rng.normal(0, 3, rows)
    return pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "y": y}).round(3)


def challenger_tag(result: dg.ExecuteInProcessResult) -> str:
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "challenger_model"
    ]
    return event.materialization.metadata["tag"].value


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_challenger_trained_on_more_data_wins_on_rows_the_champion_never_saw(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    first, second = noisy_nonlinear(300, seed=0), noisy_nonlinear(300, seed=100)
    first.to_csv(landing / "batch_000.csv", index=False)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "curves",
                "problem": {"task": "regression", "target": "y"},
                "source": {"uri": str(landing)},
                "quality": {"profile": {"enabled": False}},  # this test is about the gate, not learned ranges
                "training": {"candidates": FOREST},
            }
        )
    )
    spec = load_spec(spec_path)
    settings = Settings.from_env(
        {
            "MLPLATFORM_HOME": str(tmp_path / "home"),
            "MLPLATFORM_SPEC": str(spec_path),
            "MLPLATFORM_DEPLOY": "none",
            "BENTOML_HOME": str(BENTOML_HOME),
        }
    )
    job = build_definitions(settings).resolve_job_def(MATERIALIZE_ALL)
    instance = dg.DagsterInstance.ephemeral()
    models = Registry(BentoMLStore(settings.bentoml_home), settings.artifact_root, "curves")

    before = job.execute_in_process(instance=instance, raise_on_error=False)
    assert before.success
    champion = challenger_tag(before)
    assert models.champion().tag == champion
    first_holdout = before.output_for_node("data_split", "holdout_data")

    (landing / "batch_001.csv").write_bytes(second.to_csv(index=False).encode())
    after = job.execute_in_process(instance=instance, raise_on_error=False)

    assert after.success, [e.message for e in after.all_events if e.is_failure]
    challenger = challenger_tag(after)
    holdout = after.output_for_node("data_split", "holdout_data")
    holdout_ids = features.row_ids(holdout, spec)
    champion_ids, challenger_ids = models.training_rows(champion).values, models.training_rows(challenger).values
    # the first batch's holdout rows are still holdout rows: the champion never trained on any of them
    assert set(features.row_ids(first_holdout, spec)) <= set(holdout_ids)
    assert len(challenger_ids) > len(champion_ids)
    assert not np.isin(holdout_ids, champion_ids).any() and not np.isin(holdout_ids, challenger_ids).any()

    verdict = gate(after)
    assert verdict.passed
    rows = {name: verdict.metadata[name].value for name in ("holdout_rows", "compared_rows")}
    assert rows == {"holdout_rows": len(holdout), "compared_rows": len(holdout)}
    assert verdict.metadata["excluded_champion_trained_rows"].value == 0
    assert (
        f"compared on {len(holdout)} holdout rows neither model trained on; 0 of the {len(holdout)} holdout rows "
        f"were left out because champion {champion} trained on them"
    ) in verdict.description
    assert models.champion().tag == challenger and models.champion().previous == champion

    # Why the rows matter: on rows it learned from, the champion looks better than the challenger does on
    # fresh ones; judged on a holdout that held them, it could keep its place undeservedly.
    [scores] = [p.evidence for p in models.history() if p.tag == challenger]
    assert scores["challenger"]["rmse"] < scores["champion"]["rmse"]
    learned = pd.concat([first, second], ignore_index=True)
    learned = learned[np.isin(features.row_ids(learned, spec), champion_ids)].reset_index(drop=True)
    on_its_own_rows = evaluation.score(models.load(champion).model, learned, spec)["rmse"]
    assert on_its_own_rows < scores["challenger"]["rmse"]
