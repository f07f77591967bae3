"""Shared fixtures: seed reports, an isolated executor home, CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from executor.cli import cli

pytest_plugins = ["pytester", "tests.docker_gate", "tests.sandbox_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "examples" / "reports"
SEED_FILES = sorted(SEEDS.glob("*.txt"))
SEED_IDS = {
    "000": "fsar_9782aafc-e959-4a39-9820-40b711f6e712",
    "001": "fsar_42436ff6-822f-4a21-b7c9-23010b30517e",
    "002": "fsar_3f4f1333-91c8-4a6d-89bc-a193ce80357e",
    "003": "fsar_51f8aa7f-7563-46d2-b8f2-a4e2eb2402f9",
    "004": "fsar_bfb8a8d5-dd74-41a6-887b-a6603faeef6a",
}


def seed(prefix: str) -> Path:
    return next(p for p in SEED_FILES if p.name.startswith(prefix))


def write_report(
    directory: Path, proposal_id: str, path: str, content: str, opportunity: str = "Small change"
) -> Path:
    """A one-file ``idea_implementation`` report in the seeds' markdown form."""
    directory.mkdir(parents=True, exist_ok=True)
    report = directory / f"{proposal_id}.txt"
    report.write_text(
        "# FSAR Proposal Report\n"
        f"- id: {proposal_id}\n- timestamp: 2026-01-02T19:12:25.611Z\n- severity: 6\n"
        "- block_execution: false\n- proposal:\n\n"
        f"idea_implementation: Create or update the file {path} with this complete content:\n\n"
        f"{content}\n"
        f"This is for opportunity: {opportunity}\n"
    )
    return report


def git(repo: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
    """Run git in ``repo`` as a test author, with no system config; stdout, stripped."""
    environment = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "GIT_CONFIG_NOSYSTEM": "1",
        **(env or {}),
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], input=input, capture_output=True, check=True, env=environment
    )
    return done.stdout.decode().strip()


def commit_file(repo: Path, path: str, content: str, message: str = "change") -> str:
    """Write, add and commit one file (no hooks); the new commit."""
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    git(repo, "add", path)
    git(repo, "-c", "core.hooksPath=/dev/null", "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(autouse=True)
def executor_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own state directory and none of the caller's settings."""
    for name in list(os.environ):
        if name.startswith("EXECUTOR_") and name != "EXECUTOR_REQUIRE_DOCKER":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("EXECUTOR_HOME", str(home))
    return home


class Cli:
    """Runs the CLI in-process (click's runner), returning the result."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str | Path, input: str | None = None) -> Result:
        return self.runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def run_cli() -> Cli:
    return Cli()


def run_executor(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the installed ``executor`` as a real process, as CI would."""
    return subprocess.run(
        [sys.executable, "-m", "executor", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.fixture
def ingested(run_cli: Cli) -> Cli:
    """The seed reports already ingested."""
    result = run_cli("ingest", SEEDS)
    assert result.exit_code == 0, result.output
    return run_cli
