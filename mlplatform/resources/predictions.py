"""The prediction log as a resource: the folder the prediction service writes to (``MLPLATFORM_PREDICTION_LOG`` of
the local deployment), read by the monitoring assets."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from mlplatform.lib.serving.prediction_log import read_prediction_log


class PredictionLogs(dg.ConfigurableResource):
    """Where served predictions are logged: ``folder``/<project>/date=<day>/<time>-....parquet."""

    folder: str

    def read(self, project: str) -> pd.DataFrame:
        """Every prediction logged for ``project``, oldest file first (empty when none was)."""
        return read_prediction_log(self.folder, project)
