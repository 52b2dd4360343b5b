"""DOUBLE kortex_api.autogen.client_stubs.BaseClientRpc (tests only): the Base methods uvs
uses, with the real signatures (``deviceId = 0``, ``options = RouterClientSendOptions()``,
whose default timeout is 10 s)."""

from kortex_api.autogen.client_stubs._stub import Stub
from kortex_api.autogen.messages import Base_pb2, Common_pb2
from kortex_api.RouterClient import RouterClientSendOptions

_DEFAULT = RouterClientSendOptions()   # one shared default instance, as in the real stubs


class BaseClient(Stub):
    SERVICE = "Base"

    def SetServoingMode(self, servoingmodeinformation, deviceId=0, options=_DEFAULT):
        self._call("SetServoingMode", servoingmodeinformation,
                   Base_pb2.ServoingModeInformation, deviceId, options)

    def GetServoingMode(self, deviceId=0, options=_DEFAULT):
        return self._call("GetServoingMode", None, None, deviceId, options)

    def GetArmState(self, deviceId=0, options=_DEFAULT):
        return self._call("GetArmState", None, None, deviceId, options)

    def GetActuatorCount(self, deviceId=0, options=_DEFAULT):
        return self._call("GetActuatorCount", None, None, deviceId, options)

    def SendJointSpeedsCommand(self, jointspeeds, deviceId=0, options=_DEFAULT):
        self._call("SendJointSpeedsCommand", jointspeeds, Base_pb2.JointSpeeds, deviceId,
                   options)

    def Stop(self, deviceId=0, options=_DEFAULT):
        self._call("Stop", None, None, deviceId, options)

    def ApplyEmergencyStop(self, deviceId=0, options=_DEFAULT):
        self._call("ApplyEmergencyStop", None, None, deviceId, options)

    def ClearFaults(self, deviceId=0, options=_DEFAULT):
        self._call("ClearFaults", None, None, deviceId, options)

    def ReadAllActions(self, requestedactiontype, deviceId=0, options=_DEFAULT):
        return self._call("ReadAllActions", requestedactiontype, Base_pb2.RequestedActionType,
                          deviceId, options)

    def ExecuteActionFromReference(self, actionhandle, deviceId=0, options=_DEFAULT):
        self._call("ExecuteActionFromReference", actionhandle, Base_pb2.ActionHandle,
                   deviceId, options)

    def ExecuteAction(self, action, deviceId=0, options=_DEFAULT):
        self._call("ExecuteAction", action, Base_pb2.Action, deviceId, options)

    def OnNotificationActionTopic(self, callback, notificationoptions, deviceId=0,
                                  options=_DEFAULT):
        handle = self._call("OnNotificationActionTopic", notificationoptions,
                            Common_pb2.NotificationOptions, deviceId, options)
        self.router.transport._notification_handlers[handle.identifier] = callback
        return handle

    def Unsubscribe(self, notificationhandle, deviceId=0, options=_DEFAULT):
        self.router.transport._notification_handlers.pop(notificationhandle.identifier, None)
        self._call("Unsubscribe", notificationhandle, Common_pb2.NotificationHandle,
                   deviceId, options)
