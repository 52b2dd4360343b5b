"""uvs core: robot models, kinematics, simulation, babbling, datasets, estimators, control law.

Never imports rclpy or torch, so every formula here is testable with plain pytest.
"""

__version__ = "0.1.0"
