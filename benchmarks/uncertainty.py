#!/usr/bin/env python3
"""Does nk_ens's uncertainty predict failure? Rollouts on the paper's protocol.

The ensemble (``--model``, default the shipped ``models/<task>/nk_ens``) servoes
``--targets`` targets per seed for ``--seeds`` seeds (Task.sample_targets, as `uvs
benchmark` draws them; default 110 x 10 = the paper's 1100 trajectories) with the
protocol's batched rollout (uvs_core.evaluation.rollout: 200 steps from the reference
code's start pose, per-joint clip at 1.22 rad/s, joints masked before their limits,
gain 1, no uncertainty thresholds: the law is the paper's). Every step records the
ensemble's uncertainty u (dimensionless, the members' RMS spread of J over |J|_F; see
uvs_learning.nk_ensemble) at the configuration the arm is in; a trajectory's score is
its mean u over the steps.

Printed (``--json``: one object):
- success (%, the protocol's threshold-averaged measure) of all, the confident half
  (mean u below the median) and the unconfident half, and per quartile of mean u;
- Spearman's rank correlation of mean u with the final distance;
- AUROC of mean u for failure (final distance above each of ``--fail``, task units),
  and of the mean u of the first EARLY = 20 steps after the start pose (1 s: an early
  warning, before the arm is wherever it ends), beside two references: the initial
  distance to the target (known before moving, so u must beat it to be worth anything)
  and the mean true Jacobian error |J_hat - J*|_F (an oracle the controller cannot
  have).

The figure (``--figure``): final distance against mean u (log-log), and the success of
the confident and unconfident halves and of the quartiles.

    python benchmarks/uncertainty.py                                  # single point
    python benchmarks/uncertainty.py --task multi_point --fail 0.01,0.1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from uvs_core.estimators import load_estimator
from uvs_core.evaluation import protocol, rollout, threshold_success
from uvs_core.paths import installed_dir
from uvs_core.robot import load_robot
from uvs_core.tasks import make_task

ROOT = Path(__file__).resolve().parents[1]
#: steps after the start pose (1 s at dt 0.05) whose mean u is the early warning
EARLY = 20


class Recorder:
    """A stateless batch view of an estimator with uncertainty that keeps every step's u.

    estimate_batch(qa (B, k), x) -> J (B, m, k); u (B,) appended to ``self.steps``.
    """

    def __init__(self, est) -> None:
        self.est = est
        # evaluation.batched looks the view up in the registry under the estimator's name
        # (nk_ens: stateless, so it calls estimate_batch here with the whole batch).
        self.name = est.name
        self.steps: list[np.ndarray] = []

    def batch_view(self, batch: int) -> Recorder:
        return self

    def reset(self) -> None:
        self.steps = []

    def update(self, qa, x) -> None:
        pass

    def estimate_batch(self, qa, x=None) -> np.ndarray:
        jac, u = self.est.estimate_batch_with_uncertainty(qa)
        self.steps.append(u)
        return jac


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the boolean labels (Mann-Whitney U over
    n_pos n_neg, ties counted half); NaN when one class is empty."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def run(task_name: str, model: Path, targets: int, seeds: int) -> dict:
    """Roll out and record: per trajectory mean u, final/initial distance, mean |J - J*|_F."""
    task = make_task(task_name, load_robot("gen3"))
    est = load_estimator(model, task=task, name="nk_ens")
    proto = protocol(task_name)
    options = proto.rollout_options(task.robot.n)
    mean_u, early_u, final, initial, frob, seed_of = [], [], [], [], [], []
    for seed in range(seeds):
        goals = task.sample_targets(np.random.default_rng(seed), targets)
        rec = Recorder(est)
        r = rollout(task, rec, goals, **options)
        u = np.stack(rec.steps, axis=1)                 # (B, T)
        mean_u.append(u.mean(axis=1))
        early_u.append(u[:, 1:EARLY + 1].mean(axis=1))
        final.append(r.distance[:, -1])
        initial.append(r.distance[:, 0])
        frob.append(r.frobenius.mean(axis=1))
        seed_of.append(np.full(targets, seed))
    return {"task": task_name, "model": str(model), "members": len(est.members),
            "thresholds": proto.threshold_values,
            "mean_u": np.concatenate(mean_u), "early_u": np.concatenate(early_u),
            "final": np.concatenate(final),
            "initial": np.concatenate(initial), "frobenius": np.concatenate(frob),
            "seed": np.concatenate(seed_of)}


def analyse(data: dict, fail: list[float]) -> dict:
    from scipy.stats import spearmanr

    u, final, thr = data["mean_u"], data["final"], data["thresholds"]
    median = float(np.median(u))
    confident = u < median
    quartiles = np.quantile(u, [0.25, 0.5, 0.75])
    q_index = np.searchsorted(quartiles, u, side="right")
    out = {
        "task": data["task"], "model": data["model"], "members": data["members"],
        "trajectories": int(u.size),
        "mean_u": {"median": median, "min": float(u.min()), "max": float(u.max())},
        "success": {
            "all": threshold_success(final, thr),
            "confident_half": threshold_success(final[confident], thr),
            "unconfident_half": threshold_success(final[~confident], thr),
            "quartiles": [threshold_success(final[q_index == i], thr) for i in range(4)],
            "quartile_edges": quartiles.tolist(),
        },
        "spearman_u_final": float(spearmanr(u, final).statistic),
        "spearman_early_u_final": float(spearmanr(data["early_u"], final).statistic),
        "spearman_initial_final": float(spearmanr(data["initial"], final).statistic),
        "auroc": {},
    }
    for f in fail:
        failed = final > f
        out["auroc"][f"{f:g}"] = {
            "failures": int(failed.sum()),
            "mean_u": auroc(u, failed),
            "early_u": auroc(data["early_u"], failed),
            "initial_distance": auroc(data["initial"], failed),
            "frobenius_oracle": auroc(data["frobenius"], failed),
        }
    return out


def figure(data: dict, result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    u, final = data["mean_u"], data["final"]
    units = "px" if data["task"] == "visual_servo" else "m"
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    median = result["mean_u"]["median"]
    confident = u < median
    ax.scatter(u[confident], np.maximum(final[confident], 1e-6), s=5, alpha=0.5,
               label="confident half", color="tab:blue")
    ax.scatter(u[~confident], np.maximum(final[~confident], 1e-6), s=5, alpha=0.5,
               label="unconfident half", color="tab:red")
    ax.axvline(median, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("mean ensemble uncertainty u over the trajectory (|std J|_F / |J|_F)")
    ax.set_ylabel(f"final distance ({units})")
    ax.set_title(f"{data['task']}: {result['trajectories']} trajectories, Spearman "
                 f"{result['spearman_u_final']:.2f}", fontsize=10)
    ax.legend(fontsize=8)
    s = result["success"]
    labels = ["conf.\nhalf", "unconf.\nhalf", "Q1", "Q2", "Q3", "Q4"]
    values = [s["confident_half"], s["unconfident_half"], *s["quartiles"]]
    colors = ["tab:blue", "tab:red"] + ["tab:grey"] * 4
    bars = bx.bar(labels, values, color=colors)
    bx.bar_label(bars, fmt="%.1f", fontsize=8)
    bx.axhline(s["all"], color="black", lw=0.8, ls="--", label=f"all {s['all']:.1f}")
    bx.set_ylabel("success % (threshold-averaged)")
    bx.set_title("by mean u (quartiles Q1 = most confident)", fontsize=10)
    bx.set_ylim(0, 105)
    bx.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="single_point",
                        choices=("single_point", "multi_point"))
    parser.add_argument("--model", type=Path,
                        help="nk_ens model directory (default models/<task>/nk_ens)")
    parser.add_argument("--targets", type=int, default=110, help="targets per seed")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    parser.add_argument("--fail", default="0.01,0.05",
                        help="final distances (task units) above which a trajectory "
                             "counts as failed, for the AUROC (comma-separated)")
    parser.add_argument("--figure", type=Path,
                        help="figure path (default docs/figures/<task>_uncertainty.png)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    model = args.model or installed_dir("models") / args.task / "nk_ens"
    t0 = time.perf_counter()
    data = run(args.task, model, args.targets, args.seeds)
    result = analyse(data, [float(f) for f in args.fail.split(",")])
    result["seconds"] = time.perf_counter() - t0
    path = args.figure or ROOT / "docs" / "figures" / f"{args.task}_uncertainty.png"
    figure(data, result, path)
    result["figure"] = str(path)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    s = result["success"]
    print(f"{result['task']}: {result['trajectories']} trajectories, nk_ens K = "
          f"{result['members']} ({result['model']}), {result['seconds']:.0f} s")
    print(f"mean u per trajectory: median {result['mean_u']['median']:.4f} "
          f"(min {result['mean_u']['min']:.4f}, max {result['mean_u']['max']:.4f})")
    print(f"success: all {s['all']:.2f}, confident half {s['confident_half']:.2f}, "
          f"unconfident half {s['unconfident_half']:.2f}")
    print("success by quartile of mean u (Q1 most confident): "
          + ", ".join(f"{v:.2f}" for v in s["quartiles"]))
    print(f"Spearman(mean u, final distance) {result['spearman_u_final']:.3f}; "
          f"Spearman(initial distance, final distance) "
          f"{result['spearman_initial_final']:.3f}")
    for f, a in result["auroc"].items():
        print(f"AUROC for final distance > {f} ({a['failures']} failures): mean u "
              f"{a['mean_u']:.3f}, mean u of steps 1-{EARLY} {a['early_u']:.3f}, "
              f"initial distance {a['initial_distance']:.3f}, "
              f"mean |J - J*|_F (oracle) {a['frobenius_oracle']:.3f}")
    print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
