"""Specs of uvs_core's estimators, named by the ``uvs.estimators`` entry points
of uvs_core's setup.py (uvs_core.estimators.registry). Imports no estimator."""

from uvs_core.estimators.registry import EstimatorSpec

#: the true Jacobian of the task model: no data, no state
TJ = EstimatorSpec("uvs_core.estimators.classical:TrueJacobian", order=0)

#: Broyden's secant update: online; its initial Jacobian is fitted on babbling
#: data (made on first use, uvs_core.estimators.cache); BatchedBroyden for rollouts
BROYDEN = EstimatorSpec("uvs_core.estimators.classical:Broyden", online=True,
                        batched_update=True, model_files=("data.npz",), order=10)

#: local linear regression on the K nearest babbling samples; the model is the data
LLKNN = EstimatorSpec("uvs_core.estimators.classical:LocalLinearKNN", learned=True,
                      model_files=("data.npz",), order=20)
