"""Parse throughput over a generated corpus of 10,000 reports (target: >= 5,000/s).

The corpus is made from the seed reports with fresh ids and varied content,
in memory, so disk speed does not enter. The baseline, measured in the same
run, is the least any parser must do: decode each report and split it into
lines. Run: python -m bench.parse_throughput [--reports N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from executor.report import parse_report

SEEDS = sorted((Path(__file__).resolve().parent.parent / "examples" / "reports").glob("*.txt"))
TARGET_PER_SECOND = 5_000


def corpus(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    bases = [p.read_bytes() for p in SEEDS]
    out = []
    for i in range(n):
        data = rng.choice(bases)
        ident = data.split(b"- id: ", 1)[1].split(b"\n", 1)[0]
        data = data.replace(ident, f"fsar_bench-{i:06d}".encode())
        data = data.replace(b"VARCHAR(255)", f"VARCHAR({rng.randint(10, 999)})".encode())
        if rng.random() < 0.2:
            data = data.replace(b"\n", b"\r\n")
        out.append(data)
    return out


def best_of(rounds: int, work: list[bytes], fn: object) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for data in work:
            fn(data)  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def baseline(data: bytes) -> None:
    data.decode("utf-8", "surrogateescape").split("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = corpus(args.reports)
    total_bytes = sum(map(len, work))
    base = best_of(args.rounds, work, baseline)
    parse = best_of(args.rounds, work, parse_report)
    per_second = args.reports / parse
    print(f"corpus: {args.reports} reports, {total_bytes / 1e6:.1f} MB")
    print(f"baseline decode+split: {args.reports / base:,.0f} reports/s")
    print(
        f"parse_report:          {per_second:,.0f} reports/s ({statistics.fmean([parse]) / args.reports * 1e6:.0f} us each)"
    )
    print(f"ratio parse/baseline time: {parse / base:.1f}x")
    verdict = "PASS" if per_second >= TARGET_PER_SECOND else "FAIL"
    print(f"target >= {TARGET_PER_SECOND:,}/s: {verdict}")


if __name__ == "__main__":
    main()
