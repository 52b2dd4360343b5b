"""Visual-servo success with and without a noisy tracker, and what the Huber loss buys.

``python -m uvs_bringup.benchmark_noise --out DIR`` (issue 15 item 4):

1. babbles visual_servo data with the paper protocol (``uvs_core.babble``), and makes
   a noisy copy: x as a tracker with pixel noise, dropped frames and wrong blobs would
   have recorded it (``uvs_core.tracker_noise.noisy_dataset_x``);
2. trains nk_tanh three times: MSE on the clean data, MSE on the noisy data, Huber on
   the noisy data (``uvs_learning.training.train_model``);
3. servos the protocol's targets x seeds with each model and TJ, twice: with a perfect
   tracker and with the noisy one (``uvs_core.evaluation.rollout(tracker_noise=...)``;
   the estimator and the control law see the noisy pixel, success is of the true one).

Writes OUT/results.json, OUT/report.md (the table of docs/benchmarks.md, "Tracker
noise") and the three models under OUT/models/. Serial on purpose: a few minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from uvs_bringup.verbs._common import log, positive_int

__all__ = ["NoiseBenchConfig", "ROWS", "run_noise_benchmark", "render_noise_report", "main"]

SCHEMA = "uvs-benchmark-noise/1"
#: (row key, estimator, training loss, training data), table order
ROWS = (("tj", "tj", None, None),
        ("nk_tanh/mse/clean", "nk_tanh", "mse", "clean"),
        ("nk_tanh/mse/noisy", "nk_tanh", "mse", "noisy"),
        ("nk_tanh/huber/noisy", "nk_tanh", "huber", "noisy"))


@dataclass
class NoiseBenchConfig:
    """What to run; None takes the visual_servo protocol's value (10,000 samples, 30
    epochs, 110 targets x 10 seeds, 200 steps). The noise applies to the noisy training
    data and to the noisy-tracker rollouts alike."""

    out: Path
    samples: int | None = None
    epochs: int | None = None
    targets: int | None = None
    seeds: int | None = None
    steps: int | None = None
    pixel_std: float = 2.0
    drop_prob: float = 0.1
    outlier_prob: float = 0.05
    huber_delta: float = 0.1
    command: str = ""


def run_noise_benchmark(cfg: NoiseBenchConfig, log=None) -> dict:
    """Run it; write OUT/results.json and OUT/report.md; return the results dict."""
    from uvs_core.babble import babble
    from uvs_core.estimators import load_estimator, make_estimator
    from uvs_core.evaluation import protocol, rollout, threshold_success
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task
    from uvs_core.tracker_noise import TrackerNoise, noisy_dataset_x
    from uvs_learning.training import train_model

    say = log or (lambda message: None)
    t_all = time.perf_counter()
    task = make_task("visual_servo", load_robot("gen3"))
    proto = protocol("visual_servo")
    samples = cfg.samples or proto.samples
    epochs = cfg.epochs or proto.epochs
    targets, seeds = cfg.targets or proto.targets, cfg.seeds or proto.seeds
    steps = cfg.steps or proto.steps
    noise = TrackerNoise(pixel_std=cfg.pixel_std, drop_prob=cfg.drop_prob,
                         outlier_prob=cfg.outlier_prob)
    cam = task.camera
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    clean = babble(task, samples, **proto.babble_options(task.robot.n))
    noisy = replace(clean, x=noisy_dataset_x(noise, np.random.default_rng(12345), clean.x,
                                             clean.traj, cam.width, cam.height))
    data = {"clean": clean, "noisy": noisy}
    say(f"data: {samples} samples, noisy copy with {noise}")

    models, training = {}, {}
    for key, name, loss, which in ROWS:
        if loss is None:
            models[key] = make_estimator(name, task)
            continue
        path = out / "models" / key.replace("/", "_")
        result = train_model(name, task, data[which], out=path, epochs=epochs, loss=loss,
                             huber_delta=cfg.huber_delta if loss == "huber" else None)
        models[key] = load_estimator(path, task=task, name=name)
        training[key] = {"loss": loss, "data": which, "val_loss": result["val_loss"],
                         "jacobian_frobenius_mean": result["jacobian_frobenius_mean"],
                         "fit_seconds": result["fit_seconds"]}
        say(f"{key}: mean |J - J*|_F {result['jacobian_frobenius_mean']:.2f} px/rad")

    options = proto.rollout_options(task.robot.n)
    options["steps"] = steps
    thresholds = proto.threshold_values
    rows = {}
    for key, *_ in ROWS:
        row = {}
        for tracker in ("perfect", "noisy"):
            final = []
            for seed in range(seeds):
                goals = task.sample_targets(np.random.default_rng(seed), targets)
                r = rollout(task, models[key], goals,
                            tracker_noise=noise if tracker == "noisy" else None,
                            noise_seed=1000 + seed, **options)
                final.append(r.distance[:, -1])
            final = np.concatenate(final)
            row[tracker] = {"success": threshold_success(final, thresholds),
                            "median_final_px": float(np.median(final)),
                            "within_10px": float(100.0 * np.mean(final < 10.0))}
        rows[key] = {**row, "training": training.get(key)}
        say(f"{key}: success {row['perfect']['success']:.2f} perfect tracker, "
            f"{row['noisy']['success']:.2f} noisy")

    results = {"schema": SCHEMA, "task": "visual_servo", "command": cfg.command,
               "config": {k: (str(v) if isinstance(v, Path) else v)
                          for k, v in asdict(cfg).items()},
               "protocol": {"samples": samples, "epochs": epochs, "targets": targets,
                            "seeds": seeds, "steps": steps,
                            "thresholds_px": list(proto.thresholds)},
               "noise": asdict(noise), "rows": rows,
               "seconds": time.perf_counter() - t_all}
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True),
                                      encoding="utf-8")
    (out / "report.md").write_text(render_noise_report(results), encoding="utf-8")
    return results


def render_noise_report(results: dict) -> str:
    """The markdown table: success % with a perfect and a noisy tracker per row."""
    n = results["noise"]
    p = results["protocol"]
    lines = [
        f"Visual servo, {p['targets']} targets x {p['seeds']} seeds, {p['steps']} steps; "
        f"success % averaged over {p['thresholds_px'][0]:g}..{p['thresholds_px'][1]:g} px. "
        f"Noisy tracker: {n['pixel_std']:g} px noise, {100 * n['drop_prob']:g} % dropped "
        f"frames, {100 * n['outlier_prob']:g} % wrong blobs.",
        "",
        "| model | trained on | mean ‖Ĵ − J*‖_F (px/rad) | perfect tracker | noisy tracker "
        "| noisy: median final px |",
        "|---|---|---|---|---|---|"]
    for key, name, loss, which in ROWS:
        row = results["rows"][key]
        label = "TJ" if name == "tj" else \
            f"Tanh-NK ({'MSE' if loss == 'mse' else 'Huber'})"
        trained = "—" if which is None else f"{which} data"
        frob = "0 (exact)" if row["training"] is None else \
            f"{row['training']['jacobian_frobenius_mean']:.2f}"
        lines.append(f"| {label} | {trained} | {frob} | {row['perfect']['success']:.2f} | "
                     f"{row['noisy']['success']:.2f} | {row['noisy']['median_final_px']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uvs_bringup.benchmark_noise",
        description="Visual-servo success with and without a noisy tracker, for TJ and "
                    "Tanh-NK trained with MSE / Huber on clean / noisy data.")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    for opt in ("samples", "epochs", "targets", "seeds", "steps"):
        parser.add_argument(f"--{opt}", type=positive_int,
                            help=f"{opt} (default: the protocol's)")
    parser.add_argument("--pixel-std", type=float, default=2.0, help="px (default 2)")
    parser.add_argument("--drop", type=float, default=0.1,
                        help="dropped-frame probability (default 0.1)")
    parser.add_argument("--outliers", type=float, default=0.05,
                        help="wrong-blob probability (default 0.05)")
    parser.add_argument("--huber-delta", type=float, default=0.1,
                        help="Huber threshold, normalised task units (default 0.1)")
    args = parser.parse_args(argv)
    cfg = NoiseBenchConfig(out=args.out, samples=args.samples, epochs=args.epochs,
                           targets=args.targets, seeds=args.seeds, steps=args.steps,
                           pixel_std=args.pixel_std, drop_prob=args.drop,
                           outlier_prob=args.outliers, huber_delta=args.huber_delta,
                           command=shlex.join(["python", "-m", "uvs_bringup.benchmark_noise",
                                               *(argv if argv is not None else sys.argv[1:])]))
    try:
        results = run_noise_benchmark(cfg, log=log)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render_noise_report(results), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
