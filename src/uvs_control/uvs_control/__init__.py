"""uvs controller node: inverse-Jacobian servoing with the control law of uvs_core.control."""
