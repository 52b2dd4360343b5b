"""The benchmark's figures (paper Figs. 3-6) from its per-step records; matplotlib is
imported only when they are drawn. Split from ``uvs_bringup.benchmark``, which re-exports
``make_figures``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uvs_bringup.benchmark_report import table_order
from uvs_core.evaluation import PAPER_LABELS


def make_figures(results: dict, arrays: dict[str, np.ndarray], out: Path) -> list[str]:
    """fig_distance / fig_frobenius / fig_condition / fig_pd PNGs in ``out``; their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from uvs_core.evaluation import bin_indices

    ests = results["estimators"]
    names = table_order(ests)
    labels = {n: PAPER_LABELS.get(n, n) for n in names}
    colors = {n: plt.cm.tab10(i) for i, n in enumerate(names)}
    units = results["units"]
    edges = results["protocol"]["bin_edges"]
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=80)
        plt.close(fig)
        written.append(name)

    def band(ax, y, n, label):
        mean = np.nanmean(y, axis=0)
        se = np.nanstd(y, axis=0, ddof=1) / np.sqrt(max(y.shape[0], 1)) \
            if y.shape[0] > 1 else np.zeros_like(mean)
        steps = np.arange(mean.size)
        ax.plot(steps, mean, color=colors[n], label=label, lw=1.2)
        ax.fill_between(steps, mean - se, mean + se, color=colors[n], alpha=0.25, lw=0)

    # Fig. 3: distance over steps by initial-distance bin
    first = arrays[f"{names[0]}/distance"]
    bins = bin_indices(first[:, 0], edges)
    present = [i for i in range(len(edges)) if np.any(bins == i)]
    fig, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present), 3.2), squeeze=False)
    for ax, i in zip(axes[0], present):
        sel = bins == i
        for n in names:
            band(ax, arrays[f"{n}/distance"][sel], n, labels[n])
        hi = f"{edges[i + 1]:g}" if i + 1 < len(edges) else "inf"
        ax.set_title(f"initial {edges[i]:g}-{hi} {units} (n={int(sel.sum())})", fontsize=9)
        ax.set_xlabel("step")
        ax.set_yscale("log")
    axes[0][0].set_ylabel(f"distance to target ({units})")
    axes[0][-1].legend(fontsize=7)
    save(fig, "fig_distance.png")

    # Fig. 4: Frobenius distance over steps
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for n in names:
        if n == "tj":
            continue  # identically zero
        f = arrays[f"{n}/frobenius"].astype(float)
        band(ax, np.where(np.isfinite(f), f, np.nan), n, labels[n])
    ax.set_xlabel("step")
    ax.set_ylabel(f"|J_hat - J*|_F ({units}/rad)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    save(fig, "fig_frobenius.png")

    # Fig. 5: condition-number violins, log scale
    rng = np.random.default_rng(0)
    data, ticks = [], []
    for n in names:
        c = arrays[f"{n}/condition"].astype(float).reshape(-1)
        c = c[np.isfinite(c) & (c > 0)]
        if c.size == 0:
            continue
        if c.size > 20_000:
            c = rng.choice(c, 20_000, replace=False)
        data.append(np.log10(c))
        ticks.append(labels[n])
    if data:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.violinplot(data, showmedians=True)
        ax.set_xticks(range(1, len(ticks) + 1), ticks, fontsize=8)
        ax.set_ylabel("log10 condition number of J_hat")
        save(fig, "fig_condition.png")

    # Fig. 6: final distance split by the positive-definiteness criterion
    if all(f"{n}/positive_definite" in arrays for n in names):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        pos, vals, tick_pos, tick_lab = [], [], [], []
        for i, n in enumerate(names):
            always = np.all(arrays[f"{n}/positive_definite"], axis=1)
            final = arrays[f"{n}/distance"][:, -1]
            share = 100 * always.mean()
            for j, sel in enumerate((always, ~always)):
                if sel.any():
                    vals.append(np.maximum(final[sel], 1e-6))
                    pos.append(3 * i + j)
            tick_pos.append(3 * i + 0.5)
            tick_lab.append(f"{labels[n]}\nPD {share:.0f}% / not {100 - share:.0f}%")
        parts = ax.boxplot(vals, positions=pos, widths=0.8, patch_artist=True,
                           showfliers=False)
        for patch, p in zip(parts["boxes"], pos):
            patch.set_facecolor("tab:green" if p % 3 == 0 else "tab:red")
        ax.set_xticks(tick_pos, tick_lab, fontsize=6)
        ax.set_yscale("log")
        ax.set_ylabel(f"final distance ({units})")
        ax.set_title("green: J* pinv(J_hat) > 0 at every step; red: not", fontsize=9)
        save(fig, "fig_pd.png")
    return written
