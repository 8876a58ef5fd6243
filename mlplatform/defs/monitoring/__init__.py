"""The served model, watched: drift of its inputs and predictions, and its live performance once labels land.

A monitoring asset that finds the model should be retrained says so in its materialization's metadata
(``RETRAIN`` true and ``RETRAIN_REASON``); the retraining sensor in ``mlplatform.defs.automation`` reads it."""

DRIFT_ASSET = "prediction_drift"
PERFORMANCE_ASSET = "live_performance"
GROUP = "monitoring"
RETRAIN = "mlplatform/retrain"  # metadata: bool, whether this report asks for retraining
RETRAIN_REASON = "mlplatform/retrain_reason"  # metadata: text, why (becomes the training run's reason tag)
