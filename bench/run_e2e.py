"""``executor run`` and ``executor rollback`` end to end, as whole processes, warm against cold.

- run: seed 003 on a fresh repository (gates, sandbox, commit, rollout,
  rollback artifact), timed as the ``executor run`` process CI starts. Warm:
  the warm sandboxes are up and settled (waited for outside the timing).
  Cold, in the same bench: the warm sandboxes are removed first, so the run
  starts one (what every run would pay without the pool).
- rollback: ``executor rollback`` right after that run (the prepared revert
  applies as is), beside a rollback after the base moved on (the revert is
  rebuilt and proven again).
- all approved: ``executor run --all-approved`` over 100 small proposals
  (one SQL migration each) on one repository, warm, beside the same with the
  warm sandboxes removed first.

Baselines, in the same run: a process that only imports the libraries a run
needs (click, pydantic, SQLAlchemy, GitPython), and one importing what a
rollback of a prepared revert needs (click, SQLAlchemy): the floors under the
whole-process figures here. The rollback is timed after the run's warm
sandboxes have settled, as an operator's rollback comes.

Targets: warm run <= 1.0 s, rollback <= 0.4 s, 100 proposals <= 20 s.
Needs the engine and the image. Run: python -m bench.run_e2e [--runs N] [--batch N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = next((ROOT / "examples" / "reports").glob("003_*.txt"))
SEED_ID = "fsar_51f8aa7f-7563-46d2-b8f2-a4e2eb2402f9"
TARGETS = {"run": 1.0, "rollback": 0.4, "all": 20.0}


def executor(env: dict[str, str], *args: str | Path, check: bool = True) -> float:
    """Seconds one ``executor`` process took."""
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "executor", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - began
    if check and result.returncode != 0:
        raise SystemExit(f"executor {' '.join(map(str, args))} failed ({result.returncode}): {result.stderr}")
    return seconds


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args],
        check=True,
        capture_output=True,
    )


def new_repo(parent: Path) -> Path:
    repo = Path(tempfile.mkdtemp(dir=parent))
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# bench\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-qm", "init")
    return repo


def small_report(directory: Path, n: int) -> Path:
    proposal_id = f"fsar_bench-{n:04d}"
    path = directory / f"{proposal_id}.txt"
    path.write_text(
        "# FSAR Proposal Report\n"
        f"- id: {proposal_id}\n- timestamp: 2026-01-02T19:12:25.611Z\n- severity: 6\n"
        "- block_execution: false\n- proposal:\n\n"
        f"idea_implementation: Create or update the file db/{n:04d}_items.sql with this complete content:\n\n"
        f"CREATE TABLE IF NOT EXISTS items_{n} (id serial PRIMARY KEY, name text NOT NULL);\n"
        f"CREATE INDEX IF NOT EXISTS items_{n}_name ON items_{n} (name);\n\n"
        f"This is for opportunity: Bench proposal {n}\n"
    )
    return path


def approve_all(env: dict[str, str]) -> None:
    """Approve every stored proposal in one process (the setup is not what is measured)."""
    code = (
        "from executor.config import load_settings\n"
        "from executor.models import Status\n"
        "from executor.store import open_store\n"
        "store = open_store(load_settings().store)\n"
        "for s in store.summaries():\n"
        "    if s.executable and s.status is not Status.APPROVED:\n"
        "        store.decide(s.id, revision=s.revision, digest=s.digest, decision=Status.APPROVED, actor='bench')\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def summary(samples: list[float]) -> str:
    return f"median {statistics.median(samples):6.3f} s  (min {min(samples):.3f}, n={len(samples)})"


def verdict(name: str, seconds: float) -> str:
    return f"{'met' if seconds <= TARGETS[name] else 'MISSED'} (target <= {TARGETS[name]:g} s)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--cold-runs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    # Bytecode as an installed tool has it (pip compiles at install; an editable install
    # under PYTHONDONTWRITEBYTECODE would compile the changed modules in every process).
    packages = [str(ROOT / name) for name in ("executor", "plugins", "sandboxes", "rollbacks")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True, capture_output=True)
    with tempfile.TemporaryDirectory(prefix="executor-bench-") as scratch:
        work = Path(scratch)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_")}
        env["EXECUTOR_HOME"] = str(work / "home")
        executor(env, "ingest", SEED)
        executor(env, "approve", SEED_ID, "--by", "bench")

        def one_run(warm: bool) -> tuple[float, float, float]:
            executor(env, "sandbox", "up") if warm else executor(env, "sandbox", "down")
            repo = new_repo(work)
            ran = executor(env, "run", SEED_ID, "--repo", repo)
            if warm:  # an operator's rollback comes after the run's sandboxes have settled
                executor(env, "sandbox", "up")
            rolled = executor(env, "rollback", SEED_ID, "--repo", repo)
            # Again, then move the base on: the rollback rebuilds and proves the revert.
            executor(env, "run", SEED_ID, "--repo", repo)
            git(repo, "reset", "-q", "--hard")
            (repo / "later.md").write_text("later\n")
            git(repo, "add", "later.md")
            git(repo, "commit", "-qm", "later")
            rebuilt = executor(env, "rollback", SEED_ID, "--repo", repo)
            return ran, rolled, rebuilt

        one_run(True)  # fill the pool and the caches
        warm = [one_run(True) for _ in range(args.runs)]
        cold = [one_run(False) for _ in range(args.cold_runs)]
        warm_run, cold_run = [w[0] for w in warm], [c[0] for c in cold]
        rollback, rebuilt = [w[1] for w in warm], [w[2] for w in warm]

        reports = work / "reports"
        reports.mkdir()
        for n in range(args.batch):
            small_report(reports, n)
        executor(env, "ingest", reports)
        approve_all(env)

        def batch(warm: bool) -> float:
            executor(env, "sandbox", "up") if warm else executor(env, "sandbox", "down")
            return executor(env, "run", "--all-approved", "--repo", new_repo(work), check=False)

        all_warm, all_cold = batch(True), batch(False)
        executor(env, "sandbox", "up")

    floors: dict[str, list[float]] = {}
    for imports in ("click, pydantic, sqlalchemy, git", "click, sqlalchemy"):
        floors[imports] = []
        for _ in range(5):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"import {imports}"], check=True)
            floors[imports].append(time.perf_counter() - began)
    run_floor, rollback_floor = (statistics.median(f) for f in floors.values())
    print(
        f"floor of a run: a process importing click, pydantic, SQLAlchemy, GitPython: {summary(floors['click, pydantic, sqlalchemy, git'])}"
    )
    print(
        f"floor of a rollback: a process importing click, SQLAlchemy: {summary(floors['click, sqlalchemy'])}"
    )
    print("executor run, seed 003, whole process (gates, sandbox, commit, rollout, rollback artifact)")
    print(f"  warm sandboxes: {summary(warm_run)}")
    print(
        f"  cold (no pool): {summary(cold_run)}   cold/warm {statistics.median(cold_run) / statistics.median(warm_run):.1f}x"
    )
    print(
        f"  warm run: {verdict('run', statistics.median(warm_run))}; {statistics.median(warm_run) / run_floor:.1f}x its floor"
    )
    print("executor rollback, whole process")
    print(f"  prepared revert:          {summary(rollback)}")
    print(f"  base moved, rebuilt+proven: {summary(rebuilt)}")
    print(
        f"  rollback: {verdict('rollback', statistics.median(rollback))}; {statistics.median(rollback) / rollback_floor:.1f}x its floor"
    )
    print(f"executor run --all-approved, {args.batch} small proposals on one repository, whole process")
    print(f"  warm sandboxes: {all_warm:6.2f} s ({all_warm / args.batch * 1000:.0f} ms each)")
    print(f"  cold (no pool): {all_cold:6.2f} s   cold/warm {all_cold / all_warm:.2f}x")
    if args.batch == 100:
        print(f"  100 proposals: {verdict('all', all_warm)}")


if __name__ == "__main__":
    main()
