"""uvs estimation: the Jacobian estimator service node (``jacobian_estimator``)."""
