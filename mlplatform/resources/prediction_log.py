"""The prediction log as a resource: the folder the prediction service writes its Parquet files to
(``mlplatform.lib.serving.prediction_log``), read by the monitoring assets."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from mlplatform.lib.serving.prediction_log import read_prediction_log
from mlplatform.settings import Settings


class PredictionLogFolder(dg.ConfigurableResource):
    """Where the served model's predictions are logged: a folder or s3://bucket/prefix, the service's
    MLPLATFORM_PREDICTION_LOG (the local deployment gives it the home's ``predictions``)."""

    folder: str

    @classmethod
    def for_settings(cls, settings: Settings) -> PredictionLogFolder:
        return cls(folder=str(settings.prediction_log))

    def read(self, project: str) -> pd.DataFrame:
        """Every prediction logged for ``project``, oldest file first (empty when none was)."""
        return read_prediction_log(self.folder, project)
