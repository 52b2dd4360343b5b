"""Specs of uvs_learning's estimators, named by the ``uvs.estimators`` entry points
of uvs_learning's setup.py (uvs_core.estimators.registry). Imports neither torch
nor an estimator: listing them costs nothing."""

from uvs_core.estimators.registry import EstimatorSpec

NJ = EstimatorSpec("uvs_learning.neural_jacobian:NeuralJacobian", learned=True,
                   model_files=("model.pt",), order=30)
BINJ = EstimatorSpec("uvs_learning.neural_jacobian:BiNeuralJacobian", learned=True,
                     model_files=("model.pt",), order=40)
NK_RELU = EstimatorSpec("uvs_learning.neural_kinematics:NeuralKinematicsReLU", learned=True,
                        model_files=("model.pt",), order=50)
NK_TANH = EstimatorSpec("uvs_learning.neural_kinematics:NeuralKinematicsTanh", learned=True,
                        model_files=("model.pt",), order=60)
#: beyond the paper: the nk_tanh prior corrected online (issue 15); its model
#: directory holds model.pt, or only metadata naming the nk_tanh model it adapts
NK_ADAPT = EstimatorSpec("uvs_learning.nk_adapt:NeuralKinematicsAdapt", learned=True,
                         online=True, batched_update=True, model_files=("model.pt",), order=70)
#: beyond the paper: K nk_tanh members, J = their mean, with an uncertainty (issue 15)
NK_ENS = EstimatorSpec("uvs_learning.nk_ensemble:NeuralKinematicsEnsemble", learned=True,
                       model_files=("model.pt",), order=80)
