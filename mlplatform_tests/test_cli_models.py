"""``mlplatform models | promote | rollback | reproduce`` as a user types them, on one home trained twice."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mlplatform import cli
from mlplatform_tests.conftest import EXAMPLE_CSV
from mlplatform_tests.test_cli import mlplatform

LOGISTIC = {"estimator": "logistic_regression", "trials": 1}
# Regularised into near-uselessness, so the second model beats it at the gate.
WEAK = {**LOGISTIC, "search": {"C": {"choices": [0.0001]}}}


def write_spec(path: Path, candidate: dict) -> Path:
    document = {
        "name": "penguins",
        "problem": {"task": "classification", "target": "species", "drop_columns": ["year"]},
        "source": {"uri": str(EXAMPLE_CSV)},
        "training": {"candidates": {"only": candidate}},
    }
    path.write_text(yaml.safe_dump(document))
    return path


@dataclass(frozen=True)
class TrainedHome:
    folder: Path
    first: str  # the weak model, champion first
    second: str  # the better one, promoted by the gate

    def mlplatform(self, *args: str):
        return mlplatform(*args, "--spec", "weak.yaml", "--home", "state", cwd=self.folder)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    folder = tmp_path_factory.mktemp("cli_models")
    tags = []
    for name, candidate in (("weak.yaml", WEAK), ("strong.yaml", LOGISTIC)):
        write_spec(folder / name, candidate)
        done = mlplatform("run", "--spec", name, "--home", "state", cwd=folder)
        assert done.returncode == 0, done.stdout + done.stderr
        stored = sorted((folder / "state" / "bentoml" / "models" / "penguins").glob("*/model.yaml"))
        [new] = {f"penguins:{path.parent.name}" for path in stored} - set(tags)
        tags.append(new)
    return TrainedHome(folder, *tags)


def model_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "penguins:" in line]


@pytest.mark.slow
def test_models_lists_every_version_oldest_first_with_the_champion_marked(trained: TrainedHome) -> None:
    done = trained.mlplatform("models")

    assert done.returncode == 0, done.stderr
    header, *_ = done.stdout.splitlines()
    assert header.split() == ["tag", "estimator", "f1_macro", "data", "version", "trained"]
    first, second = model_lines(done.stdout)[:2]
    assert first.startswith(f"  {trained.first} ") and "LogisticRegression" in first
    assert second.startswith(f"* {trained.second} ")
    assert re.search(r" [01]\.\d{4}  [0-9a-f]{16} ", second)  # the holdout metric, then the data version
    assert done.stdout.rstrip().endswith("* champion")


@pytest.mark.slow
def test_rollback_and_promote_change_the_champion_and_say_who_and_why(trained: TrainedHome) -> None:
    rolled = trained.mlplatform("rollback", "--reason", "alerts on p99", "--by", "ana")

    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert f"champion is now {trained.first} (was {trained.second}): rollback by ana" in rolled.stdout
    assert "  reason: alerts on p99" in rolled.stdout
    assert model_lines(trained.mlplatform("models").stdout)[0].startswith(f"* {trained.first} ")

    promoted = trained.mlplatform("promote", trained.second, "--reason", "p99 fixed upstream", "--by", "bo")

    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert f"champion is now {trained.second} (was {trained.first}): manual by bo" in promoted.stdout
    history = trained.mlplatform("models", "--history").stdout.split("changes of champion:")[1].strip().splitlines()
    assert [line.split()[1:3] for line in history] == [
        ["gate", trained.first],
        ["gate", trained.second],
        ["rollback", trained.first],
        ["manual", trained.second],
    ]
    assert history[-1].endswith(f"(was {trained.first})  by bo: p99 fixed upstream")


@pytest.mark.slow
@pytest.mark.parametrize("command", [("promote", "penguins:nope", "--reason", "x"), ("reproduce", "penguins:nope")])
def test_an_unknown_tag_exits_2_naming_the_stored_ones(trained: TrainedHome, command: tuple[str, ...]) -> None:
    done = trained.mlplatform(*command)

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: model 'penguins:nope' is not in the store at ")
    assert trained.first in done.stderr and trained.second in done.stderr  # (latest: ...)
    assert "Traceback" not in done.stderr and "run " not in done.stderr  # refused before any run started


@pytest.mark.slow
def test_reproduce_retrains_at_the_recorded_data_version_and_compares(trained: TrainedHome) -> None:
    done = trained.mlplatform("reproduce", trained.first)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "retraining 'penguins' at data version" in done.stdout and f"to reproduce {trained.first}" in done.stdout
    assert re.search(rf"^  original    {trained.first}  code (git|src):", done.stdout, re.MULTILINE)
    reproduced = re.search(r"^  reproduced  (penguins:\w+)", done.stdout, re.MULTILINE).group(1)
    assert reproduced not in (trained.first, trained.second)
    assert re.search(r"^    f1_macro +([01]\.\d{6})  \1  same$", done.stdout, re.MULTILINE)
    assert "DIFFERS" not in done.stdout and done.stdout.rstrip().endswith("every metric reproduced")
    assert model_lines(trained.mlplatform("models").stdout)[0].startswith(f"  {trained.first} ")  # not promoted


def test_models_on_a_home_without_models_says_how_to_get_one(tmp_path: Path) -> None:
    done = mlplatform("models", "--home", "state", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "no model of 'penguins' is stored in" in done.stdout
    # the command as this process was started (test_commands.py: it works pasted), with the same home
    assert re.search(r"; run `\S.* run --home state` first$", done.stdout.strip()), done.stdout


def test_an_unknown_tag_on_an_empty_home_exits_2_with_the_message(tmp_path: Path) -> None:
    done = mlplatform("reproduce", "penguins:nope", "--home", "state", cwd=tmp_path)

    assert done.returncode == 2
    assert done.stderr.strip().endswith("(latest: none)") and "model 'penguins:nope' is not in the store" in done.stderr


def test_a_bug_is_not_dressed_as_bad_input(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A KeyError from a bug used to leave as "error: 'estimator'", exit 2, like an unknown tag; it now keeps
    its traceback (a process then exits 1)."""

    def buggy(args) -> int:
        return {}["estimator"]

    monkeypatch.setattr(cli, "_check_spec", buggy)

    with pytest.raises(KeyError, match="estimator"):
        cli.main(["check-spec", str(tmp_path / "spec.yaml")])
