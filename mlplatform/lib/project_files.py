"""Files of the project that are not Python modules: the prediction service (``bentos/``) and the Dagster
instance and workspace files. In a checkout they sit beside the package; a wheel carries them inside it,
under ``mlplatform/_project/`` (pyproject's ``force-include``), so an installed platform (a Dagster code
image in a pod, say) can build a bento and set up an instance without the checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PACKAGED = "_project"  # the folder name inside the installed package


def project_file(*parts: str) -> Path:
    """The project file or folder at ``parts`` (e.g. "bentos", "predictor"): the installed copy, else the
    checkout's."""
    for root in (PACKAGE_DIR / PACKAGED, PACKAGE_DIR.parent):
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"{'/'.join(parts)} is neither in the installed package ({PACKAGE_DIR / PACKAGED}) nor beside it in a "
        f"checkout ({PACKAGE_DIR.parent}); reinstall mlplatform from a wheel or a checkout"
    )
