"""FAKE kortex_api.autogen.client_stubs.BaseClientRpc (tests only)."""

import threading

from kortex_api import _fake
from kortex_api.autogen.messages import Base_pb2

HOME_HANDLE = 1001


class BaseClient:
    def __init__(self, router) -> None:
        self.router = router
        self._subscribers: dict[int, object] = {}
        _fake.ARM.call("BaseClient", transport=type(router.transport).__name__)

    def SetServoingMode(self, info) -> None:
        _fake.ARM.call("BaseClient.SetServoingMode", servoing_mode=info.servoing_mode)

    def SendJointSpeedsCommand(self, speeds) -> None:
        values = [(s.joint_identifier, s.value, s.duration) for s in speeds.joint_speeds]
        _fake.ARM.call("BaseClient.SendJointSpeedsCommand", speeds=values)
        arm = _fake.ARM
        arm.advance()
        for joint, value, _ in values:
            arm.speeds[joint] = value

    def Stop(self) -> None:
        _fake.ARM.call("BaseClient.Stop")
        _fake.ARM.advance()
        _fake.ARM.speeds = [0.0] * _fake.ARM.actuator_count

    def ClearFaults(self) -> None:
        _fake.ARM.call("BaseClient.ClearFaults")
        _fake.ARM.faulted = False

    def ReadAllActions(self, requested):
        _fake.ARM.call("BaseClient.ReadAllActions", action_type=requested.action_type)
        actions = Base_pb2.ActionList()
        if requested.action_type == Base_pb2.REACH_JOINT_ANGLES:
            for name, ident in (("Retract", 1000), ("Home", HOME_HANDLE), ("Zero", 1002)):
                action = actions.action_list.add(name=name)
                action.handle.identifier = ident
                action.handle.action_type = Base_pb2.REACH_JOINT_ANGLES
        return actions

    def OnNotificationActionTopic(self, callback, options):
        handle = Base_pb2.NotificationHandle(identifier=len(self._subscribers) + 1)
        _fake.ARM.call("BaseClient.OnNotificationActionTopic", handle=handle.identifier)
        self._subscribers[handle.identifier] = callback
        return handle

    def Unsubscribe(self, handle) -> None:
        _fake.ARM.call("BaseClient.Unsubscribe", handle=handle.identifier)
        self._subscribers.pop(handle.identifier, None)

    def ExecuteActionFromReference(self, handle) -> None:
        _fake.ARM.call("BaseClient.ExecuteActionFromReference", identifier=handle.identifier)
        arm = _fake.ARM
        outcome = arm.home_outcome
        if outcome == "never":
            return

        def finish() -> None:
            # The real API notifies from its own thread once the arm got there.
            if outcome == "end" and handle.identifier == HOME_HANDLE:
                arm.positions = list(_fake.HOME_DEG)
                arm.speeds = [0.0] * arm.actuator_count
                event = Base_pb2.ACTION_END
            else:
                event = Base_pb2.ACTION_ABORT
            for callback in list(self._subscribers.values()):
                callback(Base_pb2.ActionNotification(action_event=event, handle=handle))

        threading.Timer(0.01, finish).start()
