"""Helpers shared by the verbs: argument types, progress bars and log lines for people, JSON
for programs, the one-line error."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from contextlib import contextmanager

# The task names, defined once for the CLI and the launch files (uvs_core.tasks.TASK_NAMES,
# not imported: building the parser stays free of numpy).
from uvs_bringup.graph import TASKS

__all__ = ["TASKS", "command_line", "emit", "fail", "log", "number", "parse_models",
           "positive_int", "progress_bar"]


def number(kind, minimum: float = 0, strict: bool = True):
    """An argparse type: a ``kind`` (int or float) above ``minimum`` (or at it, when not
    ``strict``); otherwise argparse's one-line error with the reason."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if value < minimum or (strict and value == minimum) or value != value:
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value
    return parse


#: counts: targets, seeds, samples, epochs, workers, steps
positive_int = number(int)


def parse_models(items: list[str]) -> dict[str, str]:
    """``--model EST=DIR`` items -> {EST: DIR}; ValueError naming a malformed or repeated one."""
    models: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"--model {item!r}: expected EST=DIR")
        if name.strip() in models:
            raise ValueError(f"--model {name.strip()} given twice")
        models[name.strip()] = path.strip()
    return models


def command_line(verb: str, fallback: str) -> str:
    """The command as typed (``uvs <verb> ...``), for the results files; ``fallback`` when
    the verb was called from Python rather than the command line."""
    return shlex.join(["uvs", *sys.argv[1:]]) if sys.argv[1:2] == [verb] else fallback


def log(message: str) -> None:
    """A progress line for people, on stderr (stdout is the result, or its JSON)."""
    print(message, file=sys.stderr, flush=True)


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
