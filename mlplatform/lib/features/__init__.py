"""The split (row ids hashed from content) and the feature pipeline fitted on the training split."""

# Models stored before lib/ was split by domain pickle a FunctionTransformer whose function is
# ``mlplatform.lib.features._to_object_text``: unpickling looks it up here, so it must stay importable by
# that name while such models may be loaded (mlplatform_tests/lib/registry/test_stored_models.py).
from mlplatform.lib.features.features import _to_object_text  # noqa: F401
