"""Print a markdown table of the models under a folder, from their metadata.json."""

import json
import sys
from pathlib import Path


def main(root: str) -> int:
    rows = []
    for meta_path in sorted(Path(root).rglob("metadata.json")):
        meta = json.loads(meta_path.read_text())
        if "jacobian_frobenius_mean" not in meta:
            continue    # nk_adapt's models: a prior plus online adaptation, no offline figure
        folder = meta_path.parent
        size_kb = sum(f.stat().st_size for f in folder.iterdir()) / 1024
        p = meta.get("params", {})
        rows.append(
            f"| `{folder.relative_to(root)}` | {meta['m']}x{meta['k']} | "
            f"{p.get('layers', '-')}x{p.get('hidden', '-')} {p.get('activation', '')} | "
            f"{meta.get('samples', 0):,} | {meta.get('epochs_run', '-')} "
            f"(best {meta.get('best_epoch', '-')}) | {meta.get('val_loss', float('nan')):.4g} | "
            f"{meta['jacobian_frobenius_mean']:.4f} | "
            f"{meta.get('jacobian_frobenius_median', float('nan')):.4f} | {size_kb:.0f} KB |"
        )
    print("| model | J | network | samples | epochs | val loss | mean ‖Ĵ−J*‖_F "
          "| median ‖Ĵ−J*‖_F | size |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "models"))
