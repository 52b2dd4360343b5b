"""Pure tests of the vision core: hue tracker, renderer and image conversion (no ROS graph)."""

import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from uvs_core.robot import load_robot
from uvs_core.tasks import make_task
from uvs_vision.image_conv import (
    ImageConversionError,
    array_to_image_fields,
    from_bgr,
    image_msg_to_array,
    image_msg_to_bgr,
    to_bgr,
)
from uvs_vision.render import MarkerRenderer, RenderConfig, draw_disc, make_background
from uvs_vision.tracker import HueTracker, TrackerConfig, draw_detection

RED = (40, 40, 220)      # BGR, hue 0
GREEN = (40, 200, 40)    # BGR, hue 60


@pytest.fixture(scope="module")
def task():
    return make_task("visual_servo", load_robot("gen3"))


def _scene(discs, size=(240, 320), background="textured", noise_std=0.0, seed=0):
    """(H, W, 3) BGR image with anti-aliased discs [(uv, radius, colour), ...]."""
    image = make_background(size[1], size[0], background, (120, 115, 110))
    for uv, radius, colour in discs:
        draw_disc(image, uv, radius, colour)
    if noise_std:
        noise = np.random.default_rng(seed).normal(0.0, noise_std, image.shape)
        image = np.clip(np.rint(image + noise), 0, 255).astype(np.uint8)
    return image


# ------------------------------------------------------------------ tracker

@pytest.mark.parametrize("uv", [(160.0, 120.0), (20.3, 17.8), (301.71, 224.25),
                                (87.5, 190.5), (233.14, 41.9)])
@pytest.mark.parametrize("radius", [5.0, 9.3])
def test_centroid_of_a_disc_within_half_a_pixel(uv, radius):
    image = _scene([(uv, radius, RED)], noise_std=3.0)
    detection = HueTracker().detect(image)
    assert detection.found and detection.centroids.shape == (1, 2)
    np.testing.assert_allclose(detection.centroids[0], uv, atol=0.5)
    assert detection.areas[0] == pytest.approx(np.pi * radius**2, rel=0.2)
    assert detection.mask.shape == image.shape[:2] and detection.mask.dtype == np.uint8


def test_hue_wraps_around_zero_for_red():
    # Hue 176 (magenta-red) and hue 3 (orange-red) both lie in the wrapped range 170..10.
    hsv = np.array([[[176, 220, 200]], [[3, 220, 200]]], dtype=np.uint8)
    bgr_176, bgr_3 = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[:, 0]
    image = _scene([((80, 120), 8.0, tuple(int(c) for c in bgr_176)),
                    ((240, 120), 10.0, tuple(int(c) for c in bgr_3)),
                    ((160, 60), 12.0, GREEN)], background="solid")
    wrapped = HueTracker(TrackerConfig(hue_low=170, hue_high=10, max_markers=4)).detect(image)
    assert len(wrapped.areas) == 2
    np.testing.assert_allclose(wrapped.centroids, [(240, 120), (80, 120)], atol=0.5)
    # Without wrap-around (10..170), only the green disc qualifies.
    inner = HueTracker(TrackerConfig(hue_low=10, hue_high=170, max_markers=4)).detect(image)
    np.testing.assert_allclose(inner.centroids, [(160, 60)], atol=0.5)


def test_min_area_rejects_small_blobs():
    image = _scene([((100, 100), 3.0, RED)], background="solid")  # ~28 px
    assert HueTracker(TrackerConfig(min_area=20.0)).detect(image).found
    rejected = HueTracker(TrackerConfig(min_area=60.0)).detect(image)
    assert not rejected.found and rejected.centroids.shape == (0, 2)
    assert rejected.position == []


def test_lost_marker_gives_no_detection_even_with_noise():
    image = _scene([], noise_std=6.0)
    detection = HueTracker().detect(image)
    assert not detection.found
    assert len(detection.areas) == 0 and not detection.mask.any()


def test_two_markers_ordered_by_area_and_limited_by_max_markers():
    image = _scene([((60.2, 50.7), 6.0, RED), ((250.4, 180.1), 11.0, RED),
                    ((150.0, 120.0), 8.0, RED)])
    detection = HueTracker(TrackerConfig(max_markers=2)).detect(image)
    assert len(detection.areas) == 2
    assert detection.areas[0] > detection.areas[1]
    np.testing.assert_allclose(detection.centroids, [(250.4, 180.1), (150.0, 120.0)], atol=0.5)
    assert detection.position == pytest.approx([250.4, 180.1, 150.0, 120.0], abs=0.5)


def test_morphology_opening_removes_specks():
    image = _scene([((160, 120), 8.0, RED)], background="solid")
    image[10:12, 10:12] = RED          # 4-pixel speck
    config = TrackerConfig(min_area=1.0, max_markers=4)
    assert len(HueTracker(config).detect(image).areas) == 1
    no_open = TrackerConfig(min_area=1.0, max_markers=4, open_kernel=0)
    assert len(HueTracker(no_open).detect(image).areas) == 2


@pytest.mark.parametrize("bad, reason", [
    (dict(hue_low=180), "hue_low"), (dict(hue_high=-1), "hue_high"),
    (dict(sat_min=256), "sat_min"), (dict(val_min=-3), "val_min"),
    (dict(min_area=0.0), "min_area"), (dict(min_area=-5.0), "min_area"),
    (dict(max_markers=0), "max_markers"), (dict(open_kernel=40), "open_kernel"),
    (dict(hue_low=1.5), "hue_low"),
])
def test_config_validation_names_the_bad_field(bad, reason):
    with pytest.raises(ValueError, match=reason):
        TrackerConfig(**bad)


def test_debug_drawing_marks_the_centroid_and_keeps_the_input():
    image = _scene([((160, 120), 8.0, RED)], background="solid")
    before = image.copy()
    detection = HueTracker().detect(image)
    drawn = draw_detection(image, detection, label="visual_servo")
    np.testing.assert_array_equal(image, before)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    # The crosshair is drawn 6 px beyond the blob's radius, on the centroid's row.
    assert tuple(drawn[120, 160 + 8 + 5]) == (0, 255, 0)
    lost = draw_detection(_scene([]), HueTracker().detect(_scene([])))
    assert (lost[:25, :80] == (0, 0, 255)).all(axis=-1).any()   # "LOST" in red


# ------------------------------------------------------------------ image conversion

def _msg(fields):
    return SimpleNamespace(**fields)


@pytest.mark.parametrize("encoding, shape", [("bgr8", (5, 7, 3)), ("rgb8", (5, 7, 3)),
                                             ("mono8", (5, 7)), ("bgra8", (4, 3, 4)),
                                             ("mono16", (6, 5))])
def test_image_round_trip(encoding, shape):
    rng = np.random.default_rng(1)
    dtype = np.uint16 if encoding == "mono16" else np.uint8
    image = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    fields = array_to_image_fields(image, encoding)
    assert (fields["height"], fields["width"]) == shape[:2]
    assert fields["step"] == shape[1] * (shape[2] if len(shape) == 3 else 1) * image.itemsize
    assert isinstance(fields["data"], array.array)
    back = image_msg_to_array(_msg(fields))
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, image)


def test_round_trip_through_a_real_image_message():
    from sensor_msgs.msg import Image

    image = np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    msg = Image(**array_to_image_fields(image, "bgr8"))
    np.testing.assert_array_equal(image_msg_to_bgr(msg), image)


def test_padded_step_and_big_endian_rows_are_read():
    image = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)
    step = 4 * 3 + 5                             # 5 padding bytes per row
    data = b"".join(row.tobytes() + b"\xee" * 5 for row in image)
    msg = _msg(dict(height=3, width=4, encoding="rgb8", is_bigendian=0, step=step, data=data))
    np.testing.assert_array_equal(image_msg_to_array(msg), image)
    np.testing.assert_array_equal(image_msg_to_bgr(msg), image[..., ::-1])

    mono16 = np.array([[1, 258], [65535, 4096]], dtype=np.uint16)
    big = mono16.astype(">u2").tobytes()
    msg16 = _msg(dict(height=2, width=2, encoding="mono16", is_bigendian=1, step=4, data=big))
    np.testing.assert_array_equal(image_msg_to_array(msg16), mono16)


def test_colour_conversions():
    bgr = np.array([[[10, 20, 30], [200, 100, 0]]], dtype=np.uint8)
    np.testing.assert_array_equal(from_bgr(bgr, "rgb8"), bgr[..., ::-1])
    np.testing.assert_array_equal(to_bgr(from_bgr(bgr, "rgb8"), "rgb8"), bgr)
    mono = from_bgr(bgr, "mono8")
    assert mono.shape == (1, 2)
    np.testing.assert_array_equal(to_bgr(mono, "mono8"), np.repeat(mono[..., None], 3, axis=-1))


@pytest.mark.parametrize("fields, match", [
    (dict(height=2, width=2, encoding="yuv422", is_bigendian=0, step=4, data=bytes(8)),
     "unsupported"),
    (dict(height=2, width=2, encoding="bgr8", is_bigendian=0, step=6, data=bytes(8)),
     "expected step"),
    (dict(height=2, width=2, encoding="bgr8", is_bigendian=0, step=4, data=bytes(12)),
     "shorter than a row"),
])
def test_bad_messages_raise_with_a_reason(fields, match):
    with pytest.raises(ImageConversionError, match=match):
        image_msg_to_array(_msg(fields))


# ------------------------------------------------------------------ renderer

def test_renderer_draws_the_marker_at_the_projected_tool_point(task):
    renderer = MarkerRenderer(task, RenderConfig(noise_std=0.0))
    tracker = HueTracker()
    for qa in ([0.0, 1.5708], [0.4, 1.0], [-0.6, 2.0], [0.9, 0.3]):
        q = task.expand(qa)
        uv, radius, visible = renderer.marker(q)
        assert visible
        expected = task.camera.project(task.robot.position(q))
        np.testing.assert_allclose(uv, expected)
        np.testing.assert_allclose(uv, task.x(np.array(qa)))
        depth = task.camera.to_camera(task.robot.position(q))[2]
        assert radius == pytest.approx(task.camera.fx * 0.04 / depth)
        image = renderer.render(q)
        assert image.shape == (task.camera.height, task.camera.width, 3)
        centre = tuple(int(round(c)) for c in uv)
        assert tuple(image[centre[1], centre[0]]) == RED
        np.testing.assert_allclose(tracker.detect(image).centroids[0], uv, atol=0.5)


def test_fixed_pixel_radius(task):
    renderer = MarkerRenderer(task, RenderConfig(noise_std=0.0, marker_radius_px=12.0))
    uv, radius, _ = renderer.marker(task.home)
    assert radius == 12.0
    area = HueTracker().detect(renderer.render(task.home)).areas[0]
    assert area == pytest.approx(np.pi * 144, rel=0.05)


def test_marker_out_of_view_is_omitted(task):
    renderer = MarkerRenderer(task, RenderConfig(noise_std=0.0))
    # Joint 2 swings the arm's tool point behind/away: find a pose the camera cannot see.
    camera_behind = make_task("visual_servo", task.robot, {"camera": {
        "position": [0.0, 2.5, 0.3], "look_at": [0.0, 5.0, 0.3]}})
    behind = MarkerRenderer(camera_behind, RenderConfig(noise_std=0.0))
    uv, radius, visible = behind.marker(camera_behind.home)
    assert not visible and np.isnan(uv).all()
    image = behind.render(camera_behind.home)
    background = make_background(640, 480, "textured", (120, 115, 110))
    np.testing.assert_array_equal(image, background)
    assert not HueTracker().detect(image).found
    # A narrow camera whose image misses the tool point: in front, but outside the image.
    narrow = make_task("visual_servo", task.robot, {"camera": {
        "cx": -400.0}})
    assert not MarkerRenderer(narrow, RenderConfig(noise_std=0.0)).marker(narrow.home)[2]
    assert renderer.marker(task.home)[2]


def test_noise_is_seeded(task):
    def frames(seed):
        renderer = MarkerRenderer(task, RenderConfig(noise_std=4.0, seed=seed))
        return [renderer.render(task.home) for _ in range(2)]

    a, b, c = frames(7), frames(7), frames(8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])       # fresh noise each frame
    assert not np.array_equal(a[0], c[0])       # another seed, other noise
    clean = MarkerRenderer(task, RenderConfig(noise_std=0.0)).render(task.home)
    assert 2.0 < np.std(a[0].astype(float) - clean) < 6.0


def test_backgrounds_are_not_trivial_and_carry_no_hue():
    solid = make_background(64, 48, "solid", (120, 115, 110))
    assert (solid == (120, 115, 110)).all()
    for kind in ("gradient", "textured"):
        image = make_background(64, 48, kind, (120, 115, 110))
        assert image.std() > 5.0
        saturation = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 1]
        assert saturation.max() < 60


@pytest.mark.parametrize("bad", [dict(marker_color=(0, 0, 300)), dict(marker_radius=0.0),
                                 dict(background="stars"), dict(noise_std=-1.0),
                                 dict(marker_radius_px=-2.0)])
def test_render_config_validation(bad):
    with pytest.raises(ValueError):
        RenderConfig(**bad)


def test_renderer_needs_a_camera(task):
    with pytest.raises(ValueError, match="no camera"):
        MarkerRenderer(make_task("single_point", task.robot))


def test_target_ring_and_tool_marker_are_tracked_apart_and_survive_overlap(task):
    """The target ring (green) at a base-frame point and the tool disc (red): each colour's
    tracker reads its own marker's projection; the disc sitting in the ring (arrival)
    leaves the ring's centroid where it was."""
    renderer = MarkerRenderer(task, RenderConfig(noise_std=2.0))
    red = HueTracker(TrackerConfig())
    green = HueTracker(TrackerConfig(hue_low=45, hue_high=75))
    arrive = task.expand(np.array([0.5, 1.0]))
    point = task.robot.position(arrive)                     # (3,) m, base frame
    target_uv = task.camera.project(point)
    for q, overlap in ((task.home, False), (arrive, True)):
        image = renderer.render(q, point)
        tool, ring = red.detect(image), green.detect(image)
        assert tool.found and ring.found
        np.testing.assert_allclose(tool.centroids[0], task.x_from_q(q), atol=0.3)
        np.testing.assert_allclose(ring.centroids[0], target_uv, atol=0.3)
        assert (np.linalg.norm(tool.centroids[0] - ring.centroids[0]) < 1.0) == overlap
    # The ring's band: about pi (R^2 - r^2) px.
    expected = np.pi * (18.0 ** 2 - 14.0 ** 2)
    assert abs(ring.areas[0] - expected) < 0.1 * expected
    # No target point, or one out of view: no ring.
    assert not green.detect(renderer.render(arrive)).found
    assert not green.detect(renderer.render(arrive, [0.0, -5.0, 0.3])).found   # behind


def test_render_config_rejects_a_ring_wider_than_its_radius():
    with pytest.raises(ValueError, match="target_ring_px"):
        RenderConfig(target_radius_px=5.0, target_ring_px=6.0)
    with pytest.raises(ValueError, match="target_color"):
        RenderConfig(target_color=(0, 300, 0))
