"""The platform as a wheel, installed in a fresh venv with the locked versions and nothing from this checkout
(what a Dagster code image in a pod has): it trains a model into its registry and builds the prediction bento
from the service the wheel carries."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
FROM_THE_WHEEL = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import pandas as pd

    import mlplatform
    from mlplatform.resources import bentos
    from mlplatform.resources.model_store import BentoMLStore
    from mlplatform.lib.training import candidates, training
    from mlplatform.lib.features import features
    from mlplatform.lib.monitoring.reference import reference_sample
    from mlplatform.lib.registry import registry
    from mlplatform.lib.data.cleaning import clean
    from mlplatform.lib.project_files import project_file
    from mlplatform.lib.spec import default_spec_path, load_spec

    venv, home = Path(sys.argv[1]), Path(sys.argv[2])
    assert Path(mlplatform.__file__).is_relative_to(venv), mlplatform.__file__
    assert project_file("dagster.yaml").is_relative_to(venv), project_file("dagster.yaml")
    spec = load_spec(default_spec_path())
    cleaned, _ = clean(pd.read_csv(default_spec_path().parent / "penguins.csv"), spec)
    train, _, _ = features.split(cleaned, spec)
    pipeline = features.fit_feature_pipeline(train, spec)
    chosen = candidates.Candidate(estimator="logistic_regression", trials=1)
    tuned = candidates.tune(
        "linear", chosen, candidates.transformed(pipeline, train), train[spec.problem.target], spec, threads=1
    )
    model = training.ship(tuned, pipeline, len(train))
    schema = features.input_schema(pipeline, train, spec, model.classes)
    labels = registry.lineage_labels(spec=spec, data_version="wheel", run_id="wheel", metrics={}, model=model)
    store = registry.Registry(BentoMLStore(home / "bentoml"), str(home / "artifacts"), spec.name)
    version = store.save(
        model,
        schema=schema,
        labels=labels,
        metrics={},
        training_rows=features.RowIds.of(train, spec),
        reference=reference_sample(model, train, schema),
    )
    tag = bentos.build(version.tag, bentoml_home=home / "bentoml")

    import bentoml  # BENTOML_HOME is home/bentoml, the store the bento was built into

    print("bento", tag, bentoml.bentos.get(tag).path)
    """
)


def uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


@pytest.mark.slow
def test_an_installed_wheel_builds_the_bento_without_the_checkout(tmp_path: Path) -> None:
    def run(*command: str | Path, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "MLPLATFORM_"))}
        environ["BENTOML_HOME"] = str(tmp_path / "home" / "bentoml")
        done = subprocess.run(
            [str(part) for part in command], cwd=cwd, env=environ, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    run(*uv(), "build", "--wheel", "--out-dir", tmp_path / "dist", CHECKOUT, cwd=CHECKOUT)
    locked = run(
        *uv(), "export", "--frozen", "--no-dev", "--no-emit-project", "--format", "requirements-txt", cwd=CHECKOUT
    )
    (tmp_path / "requirements.txt").write_text(locked.stdout)
    [wheel] = (tmp_path / "dist").glob("mlplatform-*.whl")
    venv = tmp_path / "venv"
    run(*uv(), "venv", "--quiet", "--python", sys.executable, venv)
    run(*uv(), "pip", "install", "--quiet", "--python", venv / "bin" / "python", "-r", "requirements.txt", wheel)
    elsewhere = tmp_path / "elsewhere"  # not the checkout, so nothing of it can be found from the cwd either
    elsewhere.mkdir()
    (elsewhere / "check.py").write_text(FROM_THE_WHEEL)

    built = run(venv / "bin" / "python", "check.py", venv, tmp_path / "home", cwd=elsewhere)

    [bento_dir] = [Path(line.split()[2]) for line in built.stdout.splitlines() if line.startswith("bento ")]
    assert (bento_dir / "src" / "service.py").is_file()
    assert (bento_dir / "src" / "mlplatform" / "lib" / "serving" / "serving.py").is_file()
    assert not (bento_dir / "src" / "mlplatform" / "_project").exists()  # the package, not the project files again
