"""uvs learning: neural Jacobian estimators (NJ, Bi-NJ, NK) and their training, on PyTorch.

Never imports rclpy.
"""
