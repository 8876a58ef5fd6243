"""One candidate's search, in its own pod (``python -m mlplatform.pods.tune_candidate``): the step that launched
it through ``PipesK8sClient`` names the candidate, the spec and where the inputs are in the Pipes extras; the
tuned candidate goes to the artifact store, encrypted as the settings say, and its numbers back through Pipes."""

from __future__ import annotations

from dagster_pipes import open_dagster_pipes

from mlplatform.lib.training import pods
from mlplatform.resources.object_storage import configure_object_storage
from mlplatform.settings import Settings


def main() -> None:
    with open_dagster_pipes() as pipes:
        configure_object_storage(Settings.from_env())  # before any S3 access: every write carries the encryption
        name = pipes.get_extra("candidate")
        pipes.log.info(f"{name}: searching in pod, inputs {pipes.get_extra('inputs')}")
        tuned, report = pods.search(pipes.extras)
        pipes.log.info(
            f"{name}: cv score {tuned.cv_score:.4f} ± {tuned.cv_std:.4f} after {tuned.trials} trial(s) in "
            f"{tuned.seconds:.1f} s on {tuned.threads} thread(s); model at {report['model']}"
        )
        pipes.report_custom_message(report)


if __name__ == "__main__":
    main()
