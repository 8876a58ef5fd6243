"""The promotion gate: its judgement (floors, the champion, the margin, both directions of metric) and which
holdout rows it compares the models on."""

import numpy as np
import pandas as pd
import pytest

from mlplatform.lib.evaluation import evaluation
from mlplatform.lib.features.features import split
from mlplatform.lib.registry import registry
from mlplatform.lib.registry.promotion import ComparedRows, gate, judge
from mlplatform.lib.registry.registry import Registry
from mlplatform.resources.model_store import BentoMLStore
from mlplatform_tests.conftest import BENTOML_HOME
from mlplatform_tests.models import fitted, save_version

CLASSIFY = {"task": "classification", "target": "label", "metric": "f1_macro"}
REGRESS = {"task": "regression", "target": "y", "metric": "rmse"}


def test_the_first_model_becomes_champion_when_it_clears_the_floors(spec_from) -> None:
    spec = spec_from(problem=CLASSIFY, promotion={"floors": {"f1_macro": 0.8, "accuracy": 0.7}})

    verdict = judge({"f1_macro": 0.9, "accuracy": 0.91}, None, spec)

    assert verdict.promote
    assert any("no champion yet" in reason for reason in verdict.reasons)
    assert verdict.summary.startswith("promote: ")


def test_a_floor_keeps_even_the_first_model_out(spec_from) -> None:
    spec = spec_from(problem=CLASSIFY, promotion={"floors": {"accuracy": 0.95}})

    verdict = judge({"f1_macro": 0.9, "accuracy": 0.91}, None, spec)

    assert not verdict.promote
    assert "accuracy 0.9100 is below its floor 0.95 (promotion.floors)" in verdict.reasons


def test_a_loss_floor_is_a_ceiling(spec_from) -> None:
    spec = spec_from(problem=REGRESS, promotion={"floors": {"rmse": 2.0}})

    assert judge({"rmse": 1.5}, None, spec).promote
    verdict = judge({"rmse": 2.5}, None, spec)
    assert not verdict.promote
    assert "rmse 2.5000 is above its ceiling 2 (promotion.floors)" in verdict.reasons


def test_a_floor_on_a_metric_the_holdout_cannot_measure_blocks(spec_from) -> None:
    spec = spec_from(problem=CLASSIFY, promotion={"floors": {"roc_auc": 0.9}})

    verdict = judge({"f1_macro": 0.99}, None, spec)

    assert not verdict.promote
    assert "roc_auc is not measured" in verdict.reasons[0]


@pytest.mark.parametrize(
    ("challenger", "margin", "promote", "says"),
    [
        (0.92, 0.0, True, "better by 0.0200"),
        (0.90, 0.0, False, "no better than the champion"),  # a tie keeps the champion
        (0.89, 0.0, False, "no better than the champion"),
        (0.91, 0.05, False, "better by only 0.0100, less than the margin 0.05"),
        (0.96, 0.05, True, "better by 0.0600 (margin 0.05)"),
    ],
)
def test_the_challenger_must_beat_the_champion_by_the_margin(spec_from, challenger, margin, promote, says) -> None:
    spec = spec_from(problem=CLASSIFY, promotion={"margin": margin})

    verdict = judge({"f1_macro": challenger}, {"f1_macro": 0.90}, spec, champion_tag="p:old")

    assert verdict.promote is promote
    [comparison] = [reason for reason in verdict.reasons if "vs champion p:old" in reason]
    assert f"f1_macro {challenger:.4f} vs champion p:old 0.9000" in comparison
    assert says in comparison
    assert verdict.champion == {"f1_macro": 0.90} and verdict.challenger == {"f1_macro": challenger}


def test_lower_is_better_when_comparing_losses(spec_from) -> None:
    spec = spec_from(problem=REGRESS)

    assert judge({"rmse": 1.0}, {"rmse": 1.2}, spec, "p:old").promote
    assert not judge({"rmse": 1.3}, {"rmse": 1.2}, spec, "p:old").promote


@pytest.mark.parametrize(
    ("promotion", "message"),
    [
        ({"floors": {"rmse": 1.0}}, "promotion.floors: 'rmse' is not a classification metric"),
        ({"floors": {"nope": 1.0}}, "'nope' is not a classification metric"),
        ({"margin": -0.1}, "promotion.margin: Input should be greater than or equal to 0"),
    ],
)
def test_the_spec_rejects_bad_promotion_settings(spec_from, promotion, message) -> None:
    from mlplatform.lib.spec import SpecError

    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec_from(problem=CLASSIFY, promotion=promotion)


class TestGate:
    """The gate itself, on a real model store: only holdout rows neither model trained on are compared."""

    @pytest.fixture
    def setting(self, spec_from, tmp_path):
        spec = spec_from(problem={"task": "regression", "target": "y"})
        rng = np.random.default_rng(5)
        x = rng.uniform(-3, 3, size=400)
        frame = pd.DataFrame({"x": x, "z": rng.normal(size=400), "y": 3 * x + rng.normal(size=400)})
        models = Registry(BentoMLStore(BENTOML_HOME), str(tmp_path / "artifacts"), "p")
        return spec, frame, models

    @staticmethod
    def stored(models: Registry, spec, rows: pd.DataFrame, promote: bool = False):
        version = save_version(models, spec, fitted(rows, spec), rows)
        if promote:
            models.promote(version.tag, kind="gate", by="test", reason="first")
        return version

    def test_holdout_rows_the_champion_trained_on_are_left_out(self, setting) -> None:
        spec, frame, models = setting
        champion = self.stored(models, spec, frame.iloc[:200], promote=True)
        training, holdout, _ = split(frame, spec)
        challenger = self.stored(models, spec, training)

        verdict = gate(challenger, holdout, spec, models)

        champion_trained = holdout["x"].isin(frame["x"].iloc[:200])
        assert 0 < champion_trained.sum() < len(holdout)
        assert verdict.rows == ComparedRows(
            len(holdout), int((~champion_trained).sum()), int(champion_trained.sum()), 0
        )
        unseen = holdout[~champion_trained].reset_index(drop=True)
        assert verdict.champion == evaluation.score(models.load(champion.tag).model, unseen, spec)
        assert verdict.challenger == evaluation.score(models.load(challenger.tag).model, unseen, spec)
        assert (
            f"compared on {(~champion_trained).sum()} holdout rows neither model trained on; "
            f"{champion_trained.sum()} of the {len(holdout)} holdout rows were left out because champion "
            f"{champion.tag} trained on them"
        ) in verdict.reasons

    def test_a_champion_stored_without_row_ids_is_compared_on_the_whole_holdout(self, setting) -> None:
        spec, frame, models = setting
        champion = self.stored(models, spec, frame.iloc[:200], promote=True)
        (BENTOML_HOME / "models" / "p" / champion.tag.split(":")[1] / registry.TRAINING_ROWS_FILE).unlink()
        training, holdout, _ = split(frame, spec)

        verdict = gate(self.stored(models, spec, training), holdout, spec, models)

        assert verdict.rows == ComparedRows(
            len(holdout), len(holdout), 0, 0, champion_ids_unknown="was stored without its training row ids"
        )
        assert (
            f"compared on the whole holdout ({len(holdout)} rows): champion {champion.tag} was stored without "
            "its training row ids, so rows it trained on cannot be left out"
        ) in verdict.reasons

    def test_a_champion_whose_ids_were_hashed_from_other_columns_is_compared_on_the_whole_holdout(
        self, setting
    ) -> None:
        """Ids hashed from another id_column never match this holdout's: the gate must not claim the champion
        trained on none of its rows, it cannot know."""
        spec, frame, models = setting
        frame = frame.assign(key=range(len(frame)))
        by_key = spec.model_copy(update={"problem": spec.problem.model_copy(update={"id_column": "key"})})
        self.stored(models, by_key, frame.iloc[:200], promote=True)
        training, holdout, _ = split(frame, spec)

        verdict = gate(self.stored(models, spec, training), holdout, spec, models)

        assert verdict.rows.compared == len(holdout) and verdict.rows.champion_trained == 0
        assert "has training row ids of another kind (rows-v1: id_column key; this holdout's: rows-v1: content of" in (
            verdict.rows.champion_ids_unknown
        )

    def test_no_row_left_unseen_by_the_champion_keeps_it(self, setting) -> None:
        spec, frame, models = setting
        champion = self.stored(models, spec, frame, promote=True)  # it trained on every row, holdout included
        training, holdout, _ = split(frame, spec)

        verdict = gate(self.stored(models, spec, training), holdout, spec, models)

        assert not verdict.promote
        assert verdict.rows.compared == 0 and verdict.rows.champion_trained == len(holdout)
        assert "no holdout row is left that neither model trained on" in verdict.summary
        assert models.champion().tag == champion.tag

    def test_the_first_model_is_scored_on_the_whole_holdout(self, setting) -> None:
        spec, frame, models = setting
        training, holdout, _ = split(frame, spec)

        verdict = gate(self.stored(models, spec, training), holdout, spec, models)

        assert verdict.promote
        assert verdict.rows == ComparedRows(len(holdout), len(holdout), 0, 0)
        assert f"scored on {len(holdout)} holdout rows" in verdict.reasons
