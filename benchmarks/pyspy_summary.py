"""Summarise a py-spy raw profile (``py-spy record --threads --idle -f raw``) of a benchmark worker:
per thread, how much of the run it was busy and on what (leaf functions, and the project's own
functions inclusive), leaving out the imports before the workload started.

    .venv/bin/python -m benchmarks.pyspy_summary PROFILE.raw [--rate 250]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
#: Leaf frames that mean "waiting", not working.
_IDLE = (
    "epoll.poll",
    "select (",
    "wait (threading",
    "_worker (concurrent",
    "acquire (<built-in>",
    "get (queue",
    "sleep (",
    "poll (<built-in>",
)


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('func')} ({file})"


def summarise(path: Path, rate: float, top: int = 12) -> str:
    per_thread: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    idle: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if any("_import_reader" in f or "<frozen importlib" in f for f in frames):
            continue
        thread = frames[0]
        body = frames[1:]
        kind = (
            "event loop"
            if any(
                "run_until_complete" in f or "run_forever" in f or "runners.py" in f for f in body
            )
            else thread
        )
        if any("_worker (concurrent" in f or "concurrent/futures/thread" in f for f in body):
            kind = "executor threads"
        totals[kind] += n
        leaf = _short(body[-1]) if body else "?"
        if not body or any(i in body[-1] for i in _IDLE):
            idle[kind] += n
            continue
        per_thread[kind][leaf] += n
        seen = set()
        for f in body:
            s = _short(f)
            if ("cloudroi/" in f or "aiohttp/" in f) and s not in seen:
                seen.add(s)
                inclusive[kind][s] += n
    out = [f"py-spy profile {path.name} ({rate:g} samples/s per thread)"]
    for kind, total in totals.most_common():
        busy = total - idle[kind]
        out.append(
            f"\n== {kind}: {total / rate:.2f} s sampled, busy {busy / rate:.2f} s "
            f"({100 * busy / max(total, 1):.0f}%)"
        )
        out.append("  top leaf functions (self time):")
        for fn, n in per_thread[kind].most_common(top):
            out.append(f"    {n / rate:7.3f} s  {fn}")
        if inclusive[kind]:
            out.append("  cloudroi/aiohttp functions (inclusive):")
            for fn, n in inclusive[kind].most_common(top):
                out.append(f"    {n / rate:7.3f} s  {fn}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--rate", type=float, default=250)
    args = ap.parse_args()
    print(summarise(args.profile, args.rate))


if __name__ == "__main__":
    main()
