"""Shared by the benchmark scripts: timing, markdown tables, saving results."""

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def best_rate(step, items_per_call: int, *, calls: int, repeats: int = 3) -> float:
    """Items per second of ``step()``: the best of ``repeats`` timed runs of ``calls`` calls.

    The best run is the least disturbed by other work on a shared machine.
    """
    step()  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        best = min(best, time.perf_counter() - start)
    return items_per_call * calls / best


def warm_page_cache(*paths) -> None:
    """Flush what was just written, then read every file once so the page cache holds it.

    Without the flush, writeback of freshly built data competes with the timed runs.
    """
    os.sync()
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            with open(file, "rb") as f:
                while f.read(64 << 20):
                    pass


def verdict(ok: bool) -> str:
    """A target's verdict, as every benchmark table prints it."""
    return "met" if ok else "NOT met"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line(script: str, parser, args, *, leave_out=("work", "dir", "results", "name")) -> str:
    """``python benchmarks/SCRIPT`` with the options of ``args`` that differ from ``parser``'s
    defaults, in the parser's order: the command that reproduces the run, as each table says it.
    ``leave_out``: options that say where, not what (scratch and results directories)."""
    words = [f"python benchmarks/{script}"]
    for action in parser._actions:
        hidden = action.help == argparse.SUPPRESS or action.dest not in vars(args)  # internal flags, --help
        if not action.option_strings or action.dest in leave_out or hidden:
            continue
        value = getattr(args, action.dest)
        if value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        if isinstance(value, bool):
            words.append(flag)
        elif isinstance(value, (list, tuple)):
            words.append(f"{flag} {' '.join(map(str, value))}")
        else:
            words.append(f"{flag} {value}")
    return " ".join(words)


def machine_line() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{datetime.date.today().isoformat()}, {platform.machine()}, {cores} cores, "
        f"Python {platform.python_version()}, {platform.system()}"
    )


def publish(name: str, text: str, results_dir: Path | None = None) -> str:
    """Print ``text``, save it as ``results/<name>.md`` (saying where on stderr) and return it."""
    print(text)
    print(f"saved {save(name, text, results_dir)}", file=sys.stderr)
    return text


def save(name: str, text: str, results_dir: Path | None = None) -> Path:
    """Write ``text`` to ``results/<name>.md`` and return the path."""
    directory = Path(results_dir) if results_dir else RESULTS
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.md"
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path
