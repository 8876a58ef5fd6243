"""System packages that slow tests need, installed on demand: CI starts from a clean Debian machine and
runs only the test command, so a test that needs a browser installs it rather than skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

# Where Debian's postgresql package puts the server's programs (not on PATH): /usr/lib/postgresql/<major>/bin.
DEBIAN_POSTGRES_BIN = Path("/usr/lib/postgresql")
POSTGRES_PROGRAMS = ("initdb", "postgres")


class MissingSystemPackage(RuntimeError):
    """A command a test needs is missing and could not be installed."""


def ensure_debian_packages(packages: Sequence[str], *, commands: Mapping[str, str] | None = None) -> dict[str, str]:
    """Install with apt-get the packages whose command is not on PATH; return each package's command path.

    ``commands`` maps a package to the command that shows it is installed (default: the package's name,
    as for ``chromium``). Nothing runs when every command is there; anything that stops the install
    raises ``MissingSystemPackage`` with apt-get's own words, never a skip.
    """
    commands = {package: (commands or {}).get(package, package) for package in packages}
    missing = [package for package, command in commands.items() if shutil.which(command) is None]
    if missing:
        _apt_get_install(missing)
    found = {package: shutil.which(command) for package, command in commands.items()}
    still_missing = [f"{package} (command {commands[package]!r})" for package, path in found.items() if path is None]
    if still_missing:
        raise MissingSystemPackage(f"apt-get installed {missing} but these commands are still missing: {still_missing}")
    return {package: path for package, path in found.items() if path is not None}


def postgres_bin_dir() -> Path:
    """The folder holding PostgreSQL's ``initdb`` and ``postgres``: on PATH, else Debian's newest
    /usr/lib/postgresql/<major>/bin, else after installing Debian's ``postgresql`` with apt-get."""
    found = _postgres_bin_dir()
    if found is None:
        _apt_get_install(["postgresql"])
        found = _postgres_bin_dir()
    if found is None:
        raise MissingSystemPackage(
            f"apt-get installed postgresql but neither PATH nor {DEBIAN_POSTGRES_BIN}/*/bin has {POSTGRES_PROGRAMS}"
        )
    return found


def _postgres_bin_dir() -> Path | None:
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    versions = DEBIAN_POSTGRES_BIN.glob("*/bin") if DEBIAN_POSTGRES_BIN.is_dir() else []
    candidates += sorted(versions, key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0)[
        ::-1
    ]
    for folder in candidates:
        if all(os.access(folder / program, os.X_OK) for program in POSTGRES_PROGRAMS):
            return folder
    return None


def _apt_get_install(packages: Sequence[str]) -> None:
    if shutil.which("apt-get") is None:
        raise MissingSystemPackage(f"{packages} missing and there is no apt-get here: install them before the tests")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise MissingSystemPackage(f"{packages} missing; installing them needs root or sudo")
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # A fresh machine may have no package lists at all; waiting on the dpkg lock covers another apt-get.
    for arguments in (
        ["update", "-q"],
        ["install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600", *packages],
    ):
        command = [*prefix, "apt-get", *arguments]
        result = subprocess.run(command, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-4000:]
            raise MissingSystemPackage(f"{' '.join(command)} exited {result.returncode}:\n{output}")
