"""Candidates tuned one per step, the shipped model, the metrics and scorers they are judged by, thread policy."""

# Models stored before lib/ was split by domain pickle ``mlplatform.lib.training.TrainedModel``: unpickling
# looks the class up here, so it must stay importable by that name while such models may be loaded
# (mlplatform_tests/lib/registry/test_stored_models.py).
from mlplatform.lib.training.training import TrainedModel  # noqa: F401
