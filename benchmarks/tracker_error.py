#!/usr/bin/env python3
"""The hue tracker's pixel error on the sim camera's frames: how far the x that the live
visual graph measures is from the marker's true pixel.

    python benchmarks/tracker_error.py            # 400 frames, the shipped configs
    python benchmarks/tracker_error.py --frames 1000 --json

Renders the marker as the sim camera does (uvs_vision.render with the defaults of
config/sim_camera.yaml: textured background, 2 levels of image noise) at the pixels of
random arm poses that see the marker, each shifted by a random sub-pixel offset, and finds it
with the hue tracker (uvs_vision.tracker, config/hue_tracker.yaml's defaults). Prints
the error's bias and standard deviation per axis and its RMS, px: the noise that
benchmarks/parity.py --pixel-std puts on x offline (docs/parity.md, item 9).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def measure(frames: int, seed: int = 0) -> dict:
    """Tracker error over `frames` rendered frames -> {"bias", "std" (2,), "rms", "lost"}."""
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task
    from uvs_vision.render import MarkerRenderer, RenderConfig
    from uvs_vision.tracker import HueTracker, TrackerConfig

    task = make_task("visual_servo", load_robot("gen3"))
    renderer = MarkerRenderer(task, RenderConfig())
    tracker = HueTracker(TrackerConfig())
    rng = np.random.default_rng(seed)
    errors, lost, seen = [], 0, 0
    while seen < frames:
        q = task.expand(task.select(task.robot.sample(rng, 1)))[0]
        uv, radius, visible = renderer.marker(q)
        if not visible:
            continue
        seen += 1
        uv = uv + rng.uniform(-0.5, 0.5, 2)
        found = tracker.detect(renderer.render_at(uv, radius))
        if not found.found:
            lost += 1
            continue
        errors.append(np.asarray(found.position, float) - uv)
    err = np.array(errors)
    return {"frames": frames, "lost": lost, "bias": err.mean(axis=0).tolist(),
            "std": err.std(axis=0).tolist(), "rms": float(np.sqrt(np.mean(err ** 2)))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.frames < 1:
        print("tracker_error: --frames must be > 0", file=sys.stderr)
        return 2
    out = measure(args.frames, args.seed)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"hue tracker on {out['frames']} sim camera frames ({out['lost']} lost): "
          f"bias u {out['bias'][0]:+.3f} v {out['bias'][1]:+.3f} px, "
          f"std u {out['std'][0]:.3f} v {out['std'][1]:.3f} px, RMS {out['rms']:.3f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
