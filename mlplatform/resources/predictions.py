"""The prediction log as a resource: the folder the prediction service writes to (``MLPLATFORM_PREDICTION_LOG`` of
the local deployment), read by the monitoring assets and watched by the monitoring sensor."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import dagster as dg
import pandas as pd
from upath import UPath

from mlplatform.lib.serving.prediction_log import read_prediction_log


class PredictionLogs(dg.ConfigurableResource):
    """Where served predictions are logged: ``folder``/<project>/date=<day>/<time>-....parquet."""

    folder: str

    def read(
        self, project: str, *, since: datetime | None = None, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        return read_prediction_log(self.folder, project, since=since, columns=columns)

    def newest_file(self, project: str) -> str | None:
        """The name of the newest log file (names start with the time of their first row), None before any: only
        the latest day's folder is listed."""
        days = sorted(UPath(self.folder).joinpath(project).glob("date=*"), key=lambda path: path.name)
        for day in reversed(days):
            names = [path.name for path in day.glob("*.parquet") if not path.name.startswith(".")]
            if names:
                return f"{day.name}/{max(names)}"
        return None
