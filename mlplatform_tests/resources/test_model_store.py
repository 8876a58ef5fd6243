"""BentoML's model store through its public API only, one BentoML home per process: a store naming another
home is refused with both named, a fresh process is committed to the first store's home, and no module of the
platform reaches into ``bentoml._internal``."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlplatform.lib.registry.registry import NotStored
from mlplatform.resources.model_store import BentoMLHomeError, BentoMLStore
from mlplatform.settings import Settings
from mlplatform_tests.conftest import BENTOML_HOME

CHECKOUT = Path(__file__).resolve().parents[2]


def stored_tags() -> set[str]:
    import bentoml

    return {str(model.tag) for model in bentoml.models.list()}


def test_the_store_keeps_versions_that_bentoml_s_public_api_reads() -> None:
    import bentoml

    store = BentoMLStore(BENTOML_HOME)
    with store.create("model-store", labels={"data_version": "d1"}, metadata={"metrics": {"r2": 0.5}}) as new:
        (new.path / "model.txt").write_text("fitted")

    public = bentoml.models.get(new.tag)
    assert public.info.labels == {"data_version": "d1"} and public.info.metadata == {"metrics": {"r2": 0.5}}
    assert Path(public.path).parent == BENTOML_HOME / "models" / "model-store"
    assert (Path(public.path) / "model.txt").read_text() == "fitted"
    got = store.get(new.tag)
    assert (got.tag, got.labels, got.metadata, got.path) == (
        new.tag,
        {"data_version": "d1"},
        {"metrics": {"r2": 0.5}},
        Path(public.path),
    )
    assert [version.tag for version in store.list("model-store")] == [new.tag]
    assert store.list("never-stored") == []
    with pytest.raises(NotStored):
        store.get("model-store:not-a-version")


def test_a_store_of_another_home_is_refused_naming_both_homes(tmp_path: Path) -> None:
    elsewhere = BentoMLStore(tmp_path / "elsewhere")
    before = stored_tags()

    for use in (lambda: elsewhere.list("penguins"), lambda: elsewhere.get("penguins:v1")):
        with pytest.raises(BentoMLHomeError) as refused:
            use()
        assert f"the model store at {tmp_path / 'elsewhere'} cannot be opened" in str(refused.value)
        assert f"this process's BentoML uses the home {BENTOML_HOME}" in str(refused.value)
    with (
        pytest.raises(BentoMLHomeError, match="one home per process"),
        elsewhere.create("penguins", labels={}, metadata={}),
    ):
        pytest.fail("a version was opened in the wrong home")

    assert not (tmp_path / "elsewhere").exists()
    assert stored_tags() == before  # nor was anything written to the session's home instead


def run_fresh(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``script`` in a new Python process with no BENTOML_HOME and HOME under tmp_path (BentoML's default home is
    ~/bentoml): the state a process is in before anything chose its BentoML home."""
    environ = {k: v for k, v in os.environ.items() if k != "BENTOML_HOME"} | {"HOME": str(tmp_path / "user")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path, env=environ, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_first_store_used_commits_a_fresh_process_to_its_home(tmp_path: Path) -> None:
    done = run_fresh(
        """
        import os, sys
        from pathlib import Path

        import bentoml
        from mlplatform.resources.model_store import BentoMLHomeError, BentoMLStore

        first, other = Path("first").resolve(), Path("other").resolve()
        with BentoMLStore(first).create("fresh", labels={}, metadata={}) as new:
            pass
        print("BENTOML_HOME", os.environ["BENTOML_HOME"])
        print("public", bentoml.models.get(new.tag).path)
        try:
            BentoMLStore(other).list("fresh")
        except BentoMLHomeError as refused:
            print("refused", refused)
        """,
        tmp_path,
    )

    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["BENTOML_HOME"] == str(tmp_path / "first")
    assert Path(lines["public"]).parent == tmp_path / "first" / "models" / "fresh"  # BentoML's own calls use it
    assert lines["refused"].startswith(f"the model store at {tmp_path / 'other'} cannot be opened")
    assert f"uses the home {tmp_path / 'first'}" in lines["refused"]
    assert not (tmp_path / "other").exists() and not (tmp_path / "user" / "bentoml" / "models").exists()


def test_a_store_refuses_the_home_bentoml_took_before_any_store_was_used(tmp_path: Path) -> None:
    """BentoML used first, with BENTOML_HOME unset, keeps ~/bentoml for the process: a store then sees the
    versions it reads are not in its home, and says so rather than hand them out as its own."""
    done = run_fresh(
        """
        from pathlib import Path

        import bentoml
        from mlplatform.resources.model_store import BentoMLHomeError, BentoMLStore

        with bentoml.models.create("early") as early:
            pass
        try:
            BentoMLStore(Path("mine").resolve()).get(str(early.tag))
        except BentoMLHomeError as refused:
            print(refused)
        """,
        tmp_path,
    )

    assert done.stdout.startswith(f"the model store at {tmp_path / 'mine'} cannot be opened")
    assert f"uses the home {tmp_path / 'user' / 'bentoml'}" in done.stdout


def test_settings_take_bentoml_s_own_variable_as_bentoml_reads_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    home = {"MLPLATFORM_HOME": str(tmp_path / "home")}

    assert Settings.from_env(home).bentoml_home == tmp_path / "home" / "bentoml"
    assert Settings.from_env(home | {"BENTOML_HOME": ""}).bentoml_home == tmp_path / "home" / "bentoml"
    for named in ("~/models", "$HOME/models", str(tmp_path / "user" / "models")):
        assert Settings.from_env(home | {"BENTOML_HOME": named}).bentoml_home == tmp_path / "user" / "models", named


# --- no private BentoML ---------------------------------------------------------------------------------------


def private_bentoml_uses(source: str) -> list[int]:
    """The lines of ``source`` that import or reach ``bentoml._internal``: ``import``/``from`` statements (in a
    function too), ``bentoml._internal`` as an attribute, and a module name given to importlib as a string."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [f"{node.module}.{alias.name}" for alias in node.names] if node.module else []
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names = [f"{node.value.id}.{node.attr}"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        else:
            continue
        if any(name == "bentoml._internal" or name.startswith("bentoml._internal.") for name in names):
            found.append(node.lineno)
    return sorted(set(found))


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("from bentoml._internal.models.model import ModelStore", [1]),
        ("import os\ndef f():\n    import bentoml._internal.configuration as c", [3]),
        ("from bentoml import _internal", [1]),
        ("import bentoml\nhome = bentoml._internal.configuration", [2]),
        ("import importlib\nimportlib.import_module('bentoml._internal.models')", [2]),
        ("import bentoml\n# not bentoml._internal\nbentoml.models.get('p:v')", []),
    ],
)
def test_the_check_finds_every_way_in(source: str, lines: list[int]) -> None:
    assert private_bentoml_uses(source) == lines


def test_no_module_of_the_platform_uses_bentoml_s_private_modules() -> None:
    sources = [path for folder in ("mlplatform", "bentos", "bench") for path in (CHECKOUT / folder).rglob("*.py")]
    assert any(path.name == "model_store.py" for path in sources)  # the tree the check reads is the checkout's
    uses = []
    for path in sources:
        text = path.read_text()
        for line in private_bentoml_uses(text):
            uses.append(f"{path.relative_to(CHECKOUT)}:{line}: {text.splitlines()[line - 1].strip()}")
    assert uses == [], "BentoML's private modules used (only bentoml.models, bentoml.bentos, ...):\n" + "\n".join(uses)
