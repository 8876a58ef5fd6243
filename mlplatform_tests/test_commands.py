"""The command lines the package prints are the ones that work when pasted into the user's shell."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mlplatform.commands import CHECKOUT, command
from mlplatform.lib.spec import default_spec_path
from mlplatform.settings import Settings


def executable(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_under_uv_run_in_the_checkout_the_hint_goes_through_uv(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(CHECKOUT)
    uv_on_path = {"UV_RUN_RECURSION_DEPTH": "1", "PATH": str(executable(tmp_path / "bin", "uv").parent)}
    assert command("promote", "penguins:v1", environ=uv_on_path, argv0="x") == "uv run mlplatform promote penguins:v1"

    # `python3 -m pip install uv` may leave no `uv` on PATH; the README's own form still works then.
    no_uv = {"UV_RUN_RECURSION_DEPTH": "1", "PATH": str(tmp_path / "empty")}
    assert command("dev", environ=no_uv, argv0="x") == "python3 -m uv run mlplatform dev"


def test_under_uv_run_outside_the_checkout_the_hint_names_the_project(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    environ = {"UV_RUN_RECURSION_DEPTH": "1", "PATH": str(executable(tmp_path / "bin", "uv").parent)}
    assert command("serve", environ=environ, argv0="x") == f"uv run --project {CHECKOUT} mlplatform serve"


def test_the_console_script_is_named_as_the_shell_finds_it(tmp_path: Path) -> None:
    script = executable(tmp_path / "venv" / "bin", "mlplatform")
    assert command("run", environ={"PATH": str(script.parent)}, argv0=str(script)) == "mlplatform run"
    # Not on PATH (started by its full path): the full path.
    assert command("run", environ={"PATH": str(tmp_path)}, argv0=str(script)) == f"{script} run"


def test_python_dash_m_names_this_interpreter(tmp_path: Path) -> None:
    printed = command("models", environ={"PATH": str(tmp_path)}, argv0="/anything/cli.py")
    assert printed == f"{shlex.quote(sys.executable)} -m mlplatform.cli models"


def test_a_state_folder_and_spec_of_ones_own_are_repeated(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wine.yaml").write_text("")
    settings = Settings.from_env({"MLPLATFORM_HOME": "state", "MLPLATFORM_SPEC": "wine.yaml"})
    environ = {"PATH": str(tmp_path)}
    promote = command("promote", "wine:v1", "--reason", "why it should serve", settings=settings, environ=environ)
    assert promote.endswith(" promote wine:v1 --reason 'why it should serve' --home state --spec wine.yaml")
    assert command("dev", settings=settings, environ=environ).endswith(" dev --home state --spec wine.yaml")
    defaults = Settings.from_env({"MLPLATFORM_SPEC": str(default_spec_path())})
    assert command("run", settings=defaults, environ=environ).endswith(" mlplatform.cli run")


def user_environ(path: str) -> dict[str, str]:
    """A shell as the user has it: no uv run around it, no settings of ours (nor this session's BENTOML_HOME)."""
    ours = ("MLPLATFORM_", "DAGSTER_", "BENTOML_HOME", "UV", "VIRTUAL_ENV")
    keep = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return keep | {"PATH": path, "MLPLATFORM_DEPLOY": "none"}


def printed_run_command(started: subprocess.CompletedProcess[str]) -> str:
    assert started.returncode == 0, started.stderr
    return started.stdout.split("run `", 1)[1].split("` first", 1)[0]


@pytest.mark.parametrize("how", ["python -m", "uv run"])
def test_the_printed_command_runs_when_pasted(tmp_path: Path, how: str) -> None:
    """`models` on an empty home says which `run` to start; pasted into the user's shell, it is the CLI."""
    user = user_environ(os.environ.get("PATH", "").replace(str(Path(sys.executable).parent) + os.pathsep, ""))
    home = str(tmp_path / "state")
    if how == "python -m":
        start, cwd = [sys.executable, "-m", "mlplatform.cli", "models", "--home", home], tmp_path
    else:  # the README's way, from the checkout
        start = ["python3", "-m", "uv", "run", "--frozen", "--no-sync", "mlplatform", "models", "--home", home]
        cwd = CHECKOUT
    started = subprocess.run(start, cwd=cwd, env=user, capture_output=True, text=True, timeout=120)
    printed = printed_run_command(started)
    assert "--home" in printed

    # `run --help` proves the pasted words reach the CLI without training anything.
    pasted = subprocess.run(
        ["bash", "-c", f"{printed} --help"],
        cwd=cwd,
        env=user | {"UV_NO_SYNC": "1", "UV_FROZEN": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pasted.returncode == 0, f"{printed!r}: {pasted.stderr}"
    assert "exit codes of `run`" in pasted.stdout
