import dagster as dg
import pandas as pd
from sklearn.compose import ColumnTransformer

from mlplatform.lib.features import features
from mlplatform.resources import ProjectSpecResource


@dg.multi_asset(
    group_name="features",
    outs={
        "training_data": dg.AssetOut(
            kinds={"pandas", "parquet"}, code_version="2", description="The rows the model learns from."
        ),
        "holdout_data": dg.AssetOut(
            kinds={"pandas", "parquet"},
            code_version="2",
            description="The rows kept out of every fit, for an honest evaluation.",
        ),
    },
)
def data_split(context: dg.AssetExecutionContext, cleaned_data: pd.DataFrame, project: ProjectSpecResource):
    """A deterministic split of the cleaned data: by a seeded hash of each row (or its id), so a row keeps its
    side as data grows; time-ordered when the spec names a time column."""
    spec = project.load()
    training, holdout, summary = features.split(cleaned_data, spec)
    context.log.info(
        f"Split {summary.training_rows} training / {summary.holdout_rows} holdout rows: {summary.strategy}"
    )
    target = spec.problem.target
    for name, frame in (("training_data", training), ("holdout_data", holdout)):
        metadata = {"dagster/row_count": len(frame), "strategy": summary.strategy}
        if spec.problem.task == "classification":
            metadata["class_counts"] = dg.MetadataValue.json(
                {str(k): int(v) for k, v in frame[target].value_counts().items()}
            )
        yield dg.Output(frame, output_name=name, metadata=metadata)


@dg.asset(group_name="features", kinds={"scikitlearn"}, code_version="1")
def feature_pipeline(
    context: dg.AssetExecutionContext, training_data: pd.DataFrame, project: ProjectSpecResource
) -> dg.Output[ColumnTransformer]:
    """Imputation, scaling and one-hot encoding, fitted on the training split only."""
    spec = project.load()
    pipeline = features.fit_feature_pipeline(training_data, spec)
    numeric, categorical = features.feature_columns(training_data, spec)
    outputs = list(pipeline.get_feature_names_out())
    context.log.info(
        f"Fitted features: {len(numeric)} numeric + {len(categorical)} categorical -> {len(outputs)} inputs"
    )
    return dg.Output(
        pipeline,
        metadata={
            "numeric_columns": dg.MetadataValue.json(numeric),
            "categorical_columns": dg.MetadataValue.json(categorical),
            "output_features": len(outputs),
            "feature_names": dg.MetadataValue.json(outputs),
            "fitted_on_rows": len(training_data),
        },
    )
