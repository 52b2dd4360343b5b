"""What uvs needs to know about linear_ls before importing it: it is learned (served
from a model directory holding linear.npz), neither online nor batched."""

from uvs_core.estimators.registry import EstimatorSpec

LINEAR_LS = EstimatorSpec("uvs_plugin_example.linear:LinearLeastSquares",
                          learned=True, model_files=("linear.npz",))
