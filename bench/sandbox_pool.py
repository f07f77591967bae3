"""Warm sandboxes against cold ones, measured in the same run on the real engine.

- cold: a one-shot sandbox created, started, PostgreSQL initialised and
  answering, then removed (what every validation would pay without the pool);
- warm round trip: one request to the harness of a leased warm sandbox (the
  channel the plugins use), and a command run as the runner (``docker exec``);
- a fresh database + a seed-sized migration (seed 003's SQL) + the end of
  the use, on a warm sandbox that has settled since its last use (its
  harness dropped that database and made the next one after replying, as
  it has by the time an ``executor run`` starts; settling is waited for
  outside the timing): the inner part, and the whole ``Sandboxes.use()`` as
  a plugin sees it (lease, leftover check and release included);
- the same back to back, with no pause: each use also waits for the
  maintenance after the one before (a throughput figure, no target).

Targets: warm round trip <= 1/20 of the cold start; fresh database + migration
+ end <= 50 ms median. Needs the engine and the image (executor sandbox build).
Run: python -m bench.sandbox_pool [--runs N] [--cold-runs N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from executor_sandbox.pool import Sandboxes

from executor.config import SandboxSettings
from executor.report import parse_report

SEEDS = Path(__file__).resolve().parent.parent / "examples" / "reports"
ROUND_TRIP_RATIO = 20
MIGRATION_TARGET = 0.050


def seed_migration() -> str:
    report = next(SEEDS.glob("003*.txt"))
    proposal = parse_report(report.read_bytes(), name=report.name)
    return "\n".join(f.content.decode() for f in proposal.files if f.path.endswith(".sql"))


def timed(fn: Callable[[], object], runs: int, before: Callable[[], object] | None = None) -> list[float]:
    """``fn`` timed ``runs`` times; ``before`` (untimed) runs ahead of each."""
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    return samples


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:7.2f} ms  (min {min(samples) * 1000:.2f}, n={len(samples)})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    migration = seed_migration()
    pool = Sandboxes(SandboxSettings())
    pool.up(1)  # the warm sandbox exists before anything is timed

    def cold_start() -> None:
        with pool.use(cold=True) as use:
            use.sql("SELECT 1")

    cold = timed(cold_start, args.cold_runs)

    def whole_use() -> None:
        with pool.use() as use:
            result = use.sql(migration)
            assert result.ok, result.error

    with pool.use() as use:
        sandbox = use.sandbox
        ping = timed(lambda: sandbox.request("ping", 5.0), args.runs)
        runner = timed(lambda: use.run(["true"]), max(5, args.runs // 5))

        def inner() -> None:
            fresh = sandbox.begin_use()
            result = fresh.sql(migration)
            assert result.ok, result.error
            fresh.end()

        fresh_db = timed(inner, args.runs, before=sandbox.settle)
    whole = timed(whole_use, args.runs, before=pool.up)
    back_to_back = timed(whole_use, args.runs)

    cold_median = statistics.median(cold)
    print(f"seed 003 migration: {len(migration)} bytes")
    print(f"cold sandbox start + PostgreSQL ready:      {ms(cold)}")
    print(f"warm round trip (harness channel):          {ms(ping)}")
    print(f"warm command as runner (docker exec):       {ms(runner)}")
    print(f"warm: fresh db + migration + end (inner):   {ms(fresh_db)}")
    print(f"warm: the same through Sandboxes.use():     {ms(whole)}")
    print(f"warm: the same, back to back:               {ms(back_to_back)}")
    ratio = cold_median / statistics.median(ping)
    print(
        f"cold start / warm round trip: {ratio:,.0f}x (target >= {ROUND_TRIP_RATIO}x): "
        f"{'PASS' if ratio >= ROUND_TRIP_RATIO else 'FAIL'}"
    )
    print(f"cold start / warm runner command: {cold_median / statistics.median(runner):.1f}x")
    for label, samples in (("inner", fresh_db), ("Sandboxes.use()", whole)):
        median = statistics.median(samples)
        print(
            f"fresh db + migration + end ({label}): {median * 1000:.1f} ms, "
            f"{cold_median / median:.0f}x faster than cold (target <= {MIGRATION_TARGET * 1000:.0f} ms): "
            f"{'PASS' if median <= MIGRATION_TARGET else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
