"""Named QoS profiles of the controller's topics."""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# Joint velocity commands: only the newest matters, and it must not be lost
# silently (a lost zero would leave the arm moving until the driver's watchdog).
COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1,
    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)

# Status, one per cycle: reliable so a bag or a test sees every cycle; a short
# queue absorbs a subscriber's scheduling hiccups.
STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10,
    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)

# Joint and task states in: only the newest sample is used. Best effort so the
# subscription matches reliable publishers (the driver) and best-effort ones
# (a tracker on sensor-data QoS) alike; staleness is checked every cycle.
STATE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)

# Targets in: a target sent once must arrive; the newest one wins.
TARGET_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1,
    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)

# RViz markers: the newest picture only.
MARKER_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1,
    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
