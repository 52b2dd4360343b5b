"""FAKE kortex_api.autogen.client_stubs.BaseCyclicClientRpc (tests only)."""

from kortex_api import _fake
from kortex_api.autogen.messages import BaseCyclic_pb2


class BaseCyclicClient:
    def __init__(self, router) -> None:
        self.router = router
        _fake.ARM.call("BaseCyclicClient", transport=type(router.transport).__name__)

    def RefreshFeedback(self):
        arm = _fake.ARM
        arm.call("BaseCyclicClient.RefreshFeedback")
        arm.advance()
        feedback = BaseCyclic_pb2.Feedback()
        for i in range(arm.actuator_count):
            feedback.actuators.add(position=arm.positions[i] % 360.0, velocity=arm.speeds[i])
        x, y, z = arm.tool_pose
        feedback.base.tool_pose_x, feedback.base.tool_pose_y, feedback.base.tool_pose_z = x, y, z
        return feedback
