"""Helpers shared by the verbs: progress bars for people, JSON for programs."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager


@contextmanager
def progress_bar(description: str, total: int, unit: str = "it", enabled: bool = True):
    """Yield a callback ``update(done, total)`` that drives a tqdm bar on stderr."""
    from tqdm import tqdm

    bar = tqdm(
        total=total, desc=description, unit=unit, unit_scale=True, file=sys.stderr,
        mininterval=0.5, disable=not enabled, dynamic_ncols=True,
    )
    state = {"done": 0}

    def update(done: int, new_total: int | None = None) -> None:
        if new_total is not None and new_total != bar.total:
            bar.total = new_total
            bar.refresh()
        bar.update(done - state["done"])
        state["done"] = done

    try:
        yield update
    finally:
        bar.close()


def emit(result: dict, as_json: bool, human_lines: list[str]) -> None:
    """Print the result: human lines, or one JSON object last with --json."""
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        for line in human_lines:
            print(line)


def fail(message: str) -> int:
    print(f"uvs: error: {message}", file=sys.stderr)
    return 2
