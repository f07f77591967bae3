"""SQL migration validated with its rollback proven: warm sandbox against a cold one, same run.

Per iteration, seed 003's SQL goes through the SQL plugin exactly as a run
uses it (``executor.validation.validate``: claim, static check, sandbox lease,
audit triggers, snapshot, apply, re-run check, down migration, proof, release):

- warm: a fresh database on a leased warm sandbox, which has settled since
  its last use (dropped that database, made the next one), as it has when an
  ``executor run`` starts; settling is waited for outside the timing;
- back to back: the same with no pause at all, so each use also waits for
  the maintenance after the one before (a throughput figure, not the target);
- cold: the same on a one-shot container created, started and removed.

Target: warm median <= 60 ms. Needs the engine and the image.
Run: python -m bench.sql_validation [--runs N] [--cold-runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from executor_sandbox.pool import Sandboxes

from executor.config import PluginSettings, SandboxSettings, Settings
from executor.models import FileChange
from executor.plugin_api import EmptyTree
from executor.plugins import Plugins, load_plugins
from executor.report import parse_report
from executor.validation import validate

SEEDS = Path(__file__).resolve().parent.parent / "examples" / "reports"
TARGET = 0.060


class ColdSandboxes:
    """The pool's interface, every use on a new one-shot container."""

    def __init__(self, pool: Sandboxes) -> None:
        self.pool = pool

    @contextlib.contextmanager
    def use(self, **kwargs: Any) -> Iterator[Any]:
        with self.pool.use(cold=True, **kwargs) as use:
            yield use


def seed_files() -> list[FileChange]:
    report = next(SEEDS.glob("003*.txt"))
    return [f for f in parse_report(report.read_bytes(), name=report.name).files if f.language == "sql"]


def once(files: list[FileChange], plugins: Plugins, sandboxes: Any) -> float:
    began = time.perf_counter()
    report = validate(files, EmptyTree(), plugins, Settings(), sandboxes)
    seconds = time.perf_counter() - began
    if not report.ok or not all(r.proven for r in report.rollbacks):
        raise SystemExit(f"validation did not pass: {report.diagnostics}")
    return seconds


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(samples) * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms  (n={len(samples)})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    files = seed_files()
    plugins = load_plugins(PluginSettings(allow=["sql"]), third_party=False)
    pool = Sandboxes(SandboxSettings())
    once(files, plugins, pool)  # fill the warm slot, as `executor sandbox up` would
    warm = []
    for _ in range(args.runs):
        pool.up()  # untimed: wait until the warm sandboxes have settled
        warm.append(once(files, plugins, pool))
    back_to_back = [once(files, plugins, pool) for _ in range(args.runs)]
    cold = [once(files, plugins, ColdSandboxes(pool)) for _ in range(args.cold_runs)]
    warm_median, cold_median = statistics.median(warm), statistics.median(cold)
    print("seed 003 SQL validated + down migration generated + rollback proven, as a run does it")
    print(f"  warm sandbox  {summary(warm)}")
    print(f"  back to back  {summary(back_to_back)}")
    print(f"  cold sandbox  {summary(cold)}")
    print(f"  ratio cold/warm: {cold_median / warm_median:.1f}x")
    verdict = "met" if warm_median <= TARGET else "MISSED"
    print(f"  target warm median <= {TARGET * 1000:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()
