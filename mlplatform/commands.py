"""The ``mlplatform …`` command lines this package prints (a hint, the UI command), written the way that works
when pasted into the shell that started this process: a README command goes through ``uv run`` in a checkout,
where no ``mlplatform`` is on the shell's PATH, while an installed package has the console script. What it
reads of the environment is how this process was started (argv, PATH, uv's marker), not configuration."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from mlplatform.settings import Settings

CHECKOUT = Path(__file__).resolve().parent.parent


def command(
    *args: str,
    settings: Settings | None = None,
    environ: Mapping[str, str] | None = None,
    argv0: str | None = None,
) -> str:
    """``mlplatform ARGS``, prefixed as this process was started and followed by ``--home`` / ``--spec`` when
    ``settings`` differ from what the pasted command would pick by default (a run with ``--home state`` must
    hint at the same state). ``environ`` and ``argv0`` describe how this process was started."""
    environ = os.environ if environ is None else environ
    words = [*_prefix(environ, argv0 if argv0 is not None else sys.argv[0]), *args]
    if settings is not None:
        default = Settings.from_env({})
        if settings.home != default.home:
            words += ["--home", _shown(settings.home)]
        if settings.spec_path != default.spec_path:
            words += ["--spec", _shown(settings.spec_path)]
    return shlex.join(words)


def _prefix(environ: Mapping[str, str], argv0: str) -> list[str]:
    # `uv run` marks the processes it starts; its PATH holds the project's .venv/bin, the user's shell does not.
    if "UV_RUN_RECURSION_DEPTH" in environ and (CHECKOUT / "uv.lock").is_file():
        uv = ["uv"] if shutil.which("uv", path=environ.get("PATH")) else ["python3", "-m", "uv"]
        inside = Path.cwd().resolve().is_relative_to(CHECKOUT)
        return [*uv, "run", *([] if inside else ["--project", str(CHECKOUT)]), "mlplatform"]
    script = Path(argv0)
    if script.name == "mlplatform":
        found = shutil.which("mlplatform", path=environ.get("PATH"))
        return ["mlplatform"] if found and Path(found).absolute() == script.absolute() else [str(script.absolute())]
    # `python -m mlplatform.cli`, or a process Dagster started: this interpreter has the package.
    python = shutil.which("python", path=environ.get("PATH"))
    same = python is not None and Path(python).absolute() == Path(sys.executable).absolute()
    return ["python" if same else sys.executable, "-m", "mlplatform.cli"]


def _shown(path: Path) -> str:
    """Relative to the current folder when under it (what the user typed, most likely), else absolute."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
