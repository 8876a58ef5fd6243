"""Algorithm choice: one Dagster step per candidate (a fan-out, so candidates run in parallel under the
multiprocess executor and as their own pods under Kubernetes), then the choice of the best as its own asset."""

import dagster as dg
import pandas as pd
from sklearn.compose import ColumnTransformer

from mlplatform.defs.training.pods import search_in_pod
from mlplatform.lib.spec import StepResources, Training
from mlplatform.lib.training import candidates, training
from mlplatform.lib.training.candidates import TunedCandidate
from mlplatform.lib.training.metrics import natural
from mlplatform.resources import ArtifactStore, Compute, ProjectSpecResource
from mlplatform.resources.pods import CandidatePods


@dg.op(out=dg.DynamicOut(str))
def plan_candidates(context: dg.OpExecutionContext, feature_pipeline: ColumnTransformer, project: ProjectSpecResource):
    """One branch per candidate the spec names (or the task's three defaults), once the features exist."""
    chosen = candidates.candidates(project.load())
    inputs = len(feature_pipeline.get_feature_names_out())
    context.log.info(f"Tuning {len(chosen)} candidate(s) on {inputs} features: {', '.join(chosen)}")
    for name in chosen:
        yield dg.DynamicOutput(name, mapping_key=name)


@dg.op
def tune_candidate(
    context: dg.OpExecutionContext,
    name: str,
    feature_pipeline: ColumnTransformer,
    training_data: pd.DataFrame,
    project: ProjectSpecResource,
    compute: Compute,
    artifacts: ArtifactStore,
    candidate_pods: CandidatePods,
) -> dg.Output[TunedCandidate]:
    """Search one candidate's hyperparameters by cross-validation on the training split: in this step's process,
    or in a pod of its own when the spec gives the candidate one (``resources.pod``)."""
    spec = project.load()
    chosen = candidates.candidates(spec)
    features = candidates.transformed(feature_pipeline, training_data)
    target = training_data[spec.problem.target]
    pod, metadata = chosen[name].resources.pod, {}
    if pod is not None:
        context.log.info(f"{name}: searching in a pod of its own on {len(training_data):,} training rows")
        # Dagster Pipes asks the step for its output explicitly (dg.Output), as it does below too.
        tuned, metadata = search_in_pod(context, name, pod, features, target, spec, artifacts, candidate_pods)
    else:
        # the searches that share this machine's cores: a candidate in a pod of its own uses another's
        here = [other for other in chosen.values() if other.resources.pod is None]
        threads = compute.threads(concurrent_steps=len(here), training_rows=len(training_data))
        beside = f", beside {len(here) - 1} other search(es)" if compute.parallel_steps and len(here) > 1 else ""
        context.log.info(f"{name}: {threads} thread(s) per fit on {len(training_data):,} training rows{beside}")
        tuned = candidates.tune(name, chosen[name], features, target, spec, threads)
    metric = spec.problem.primary_metric
    called = name if name == chosen[name].estimator else f"{name} ({chosen[name].estimator})"
    context.log.info(
        f"{called}: cv {metric} {natural(metric, tuned.cv_score):.4f} ± {tuned.cv_std:.4f} "
        f"after {tuned.trials} trial(s) in {tuned.seconds:.1f} s; best {tuned.best_params}"
    )
    if tuned.stopped_by_time_cap:
        context.log.warning(
            f"{called}: the time cap of {chosen[name].seconds:g} s (training.candidates.{name}.seconds) stopped the "
            f"search after {tuned.trials} of {tuned.trials_asked} trial(s): this result is not reproducible, a "
            "retrain on a faster or less busy machine may complete more trials and choose another model"
        )
    return dg.Output(tuned, metadata=metadata)


@dg.op
def collect_candidates(
    tuned: list[TunedCandidate], project: ProjectSpecResource
) -> dg.Output[dict[str, TunedCandidate]]:
    metric = project.load().problem.primary_metric
    by_name = {candidate.name: candidate for candidate in tuned}
    table = pd.DataFrame(
        [
            {
                "candidate": c.name,
                f"cv_{metric}": natural(metric, c.cv_score),
                "cv_std": c.cv_std,
                "trials": c.trials,
                "stopped_by_time_cap": c.stopped_by_time_cap,
            }
            for c in by_name.values()
        ]
    )
    return dg.Output(
        by_name,
        metadata={
            "candidates": dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".4f")),
            "search_seconds": round(sum(c.seconds for c in by_name.values()), 2),
            "stopped_by_time_cap": dg.MetadataValue.json(
                sorted(c.name for c in by_name.values() if c.stopped_by_time_cap)
            ),
        },
    )


K8S_CONFIG_TAG = "dagster-k8s/config"  # read by dagster-k8s's k8s_job_executor for the step's pod


def step_pod_tags(resources: StepResources | None) -> dict[str, object]:
    """The tags that give each candidate search's pod the spec's cores and memory under k8s_job_executor: both
    requested and as the limit, so that the search's threads (``lib.training.threads``, which reads the pod's
    CPU quota) match what the scheduler set aside. Empty without ``training.resources``."""
    quantities = (
        {name: value for name, value in (("cpu", resources.cpu), ("memory", resources.memory)) if value}
        if resources
        else {}
    )
    if not quantities:
        return {}
    return {K8S_CONFIG_TAG: {"container_config": {"resources": {"requests": quantities, "limits": quantities}}}}


def candidate_models_for(training_spec: Training) -> dg.AssetsDefinition:
    """``candidate_models`` for a spec: the fan-out maps one op over the candidates' names, so every candidate
    step carries the same pod resources (the spec's ``training.resources``)."""
    tune = tune_candidate.tag(step_pod_tags(training_spec.resources))

    @dg.graph_asset(name="candidate_models", group_name="training", kinds={"scikitlearn", "optuna"})
    def candidate_models(feature_pipeline: ColumnTransformer, training_data: pd.DataFrame) -> dict:
        """Every candidate estimator, each tuned in its own step by a seeded search with cross-validation."""
        names = plan_candidates(feature_pipeline)
        tuned = names.map(lambda name: tune(name, feature_pipeline, training_data))
        return collect_candidates(tuned.collect())

    return candidate_models


@dg.asset(group_name="training", kinds={"scikitlearn"}, code_version="2")
def trained_model(
    context: dg.AssetExecutionContext,
    candidate_models: dict[str, TunedCandidate],
    feature_pipeline: ColumnTransformer,
    training_data: pd.DataFrame,
    project: ProjectSpecResource,
) -> dg.Output[training.TrainedModel]:
    """The candidate with the best cross-validated score, behind its feature pipeline: the model that ships."""
    spec = project.load()
    winner = training.select(candidate_models.values())
    model = training.ship(winner, feature_pipeline, len(training_data))
    metric = spec.problem.primary_metric
    context.log.info(
        f"Selected {winner.name} ({model.estimator_name}): cv {metric} {natural(metric, winner.cv_score):.4f}"
    )
    metadata = {
        "candidate": winner.name,
        "estimator": model.estimator_name,
        f"cv_{metric}": round(natural(metric, winner.cv_score), 4),
        "parameters": dg.MetadataValue.json(model.parameters),
        "training_rows": model.training_rows,
        "search_seconds": round(model.fit_seconds, 2),
    }
    if model.classes:
        metadata["classes"] = dg.MetadataValue.json(list(model.classes))
    return dg.Output(model, metadata=metadata)
