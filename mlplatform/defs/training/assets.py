import dagster as dg
import pandas as pd
from sklearn.compose import ColumnTransformer

from mlplatform.lib import training
from mlplatform.resources import ProjectSpecResource


@dg.asset(group_name="training", kinds={"scikitlearn"}, code_version="1")
def trained_model(
    context: dg.AssetExecutionContext,
    feature_pipeline: ColumnTransformer,
    training_data: pd.DataFrame,
    project: ProjectSpecResource,
) -> dg.Output[training.TrainedModel]:
    """The baseline estimator for the task, fitted on the training features; ships with its feature pipeline."""
    model = training.train(feature_pipeline, training_data, project.load())
    context.log.info(f"Trained {model.estimator_name} on {model.training_rows} rows in {model.fit_seconds:.2f} s")
    metadata = {
        "estimator": model.estimator_name,
        "parameters": dg.MetadataValue.json(model.parameters),
        "training_rows": model.training_rows,
        "fit_seconds": model.fit_seconds,
    }
    if model.classes:
        metadata["classes"] = dg.MetadataValue.json(list(model.classes))
    return dg.Output(model, metadata=metadata)
