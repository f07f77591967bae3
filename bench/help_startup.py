"""Cold start of ``executor --help`` as a whole process (target: <= 0.25 s).

Baseline, measured in the same run: the interpreter alone (``python -c pass``)
and ``python -c 'import click'``, so the ratio shows what the executor adds.
Run: python -m bench.help_startup [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

TARGET_SECONDS = 0.25


def median_seconds(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    python = median_seconds([sys.executable, "-c", "pass"], args.runs)
    click = median_seconds([sys.executable, "-c", "import click"], args.runs)
    helps = median_seconds([sys.executable, "-m", "executor", "--help"], args.runs)
    print(f"python -c pass:       {python * 1000:6.1f} ms")
    print(f"python -c 'import click': {click * 1000:6.1f} ms")
    print(f"executor --help:      {helps * 1000:6.1f} ms  ({helps / python:.1f}x the bare interpreter)")
    print(f"target <= {TARGET_SECONDS * 1000:.0f} ms: {'PASS' if helps <= TARGET_SECONDS else 'FAIL'}")


if __name__ == "__main__":
    main()
