"""The promotion gate's judgement: floors, the champion, the margin, both directions of metric."""

import pytest

from mlplatform.lib.promotion import judge

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
