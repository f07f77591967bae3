"""The CLI contract: output, JSON shapes and exit codes, in-process and as a real process."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SEED_IDS, SEEDS, Cli, run_executor, seed

P003 = SEED_IDS["003"]


def write_report(
    directory: Path, name: str, *, severity: int = 6, blocked: bool = False, ident: str = "fsar_extra"
) -> Path:
    text = (
        seed("003")
        .read_text(encoding="utf-8")
        .replace(SEED_IDS["003"], ident)
        .replace("- severity: 6", f"- severity: {severity}")
        .replace("- block_execution: false", f"- block_execution: {str(blocked).lower()}")
    )
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_help_lists_commands_and_exit_codes(run_cli: Cli) -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    for word in ("ingest", "list", "show", "approve", "reject", "log", "Exit codes"):
        assert word in result.output


def test_help_imports_neither_store_nor_models() -> None:
    code = (
        "import sys\n"
        "from executor.cli import cli\n"
        "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('sqlalchemy', 'pydantic', 'rich', 'alembic', 'docker', 'git') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_ingest_prints_one_line_per_report_and_is_idempotent(run_cli: Cli) -> None:
    first = run_cli("ingest", SEEDS)
    assert first.exit_code == 0
    lines = first.output.strip().splitlines()
    assert len(lines) == 5
    for line, (prefix, ident) in zip(lines, sorted(SEED_IDS.items()), strict=True):
        assert line.startswith("new")
        assert ident in line
        assert prefix in line
    assert "8 files  0 errors  1 warning" in lines[4]
    second = run_cli("ingest", SEEDS)
    assert [line.split()[0] for line in second.output.splitlines()] == ["unchanged"] * 5


def test_malformed_report_exits_2_after_storing_the_others(run_cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "a_good.txt").write_bytes(seed("003").read_bytes())
    (tmp_path / "b_no_id.md").write_text("# FSAR Proposal Report\n- severity: 6\n")
    (tmp_path / "c_bad_header.txt").write_text(
        seed("002").read_text().replace("- severity: 6", "- severity: high")
    )
    (tmp_path / "d_broken.json").write_text("{")
    result = run_cli("ingest", tmp_path)
    assert result.exit_code == 2
    assert "b_no_id.md: the report has no 'id' field" in result.output
    assert "d_broken.json: not valid JSON at line 1" in result.output
    assert "3 of 4 reports malformed" in result.output
    listed = json.loads(run_cli("list", "--json").output)
    assert {p["id"] for p in listed} == {SEED_IDS["003"], SEED_IDS["002"]}
    assert next(p for p in listed if p["id"] == SEED_IDS["002"])["executable"] is False


def test_ingest_missing_path_exits_2(run_cli: Cli, tmp_path: Path) -> None:
    result = run_cli("ingest", tmp_path / "nope")
    assert result.exit_code == 2
    assert "no such file or directory" in result.output


def test_ingest_json_reports_revision_and_voided_approval(ingested: Cli, tmp_path: Path) -> None:
    assert ingested("approve", P003).exit_code == 0
    changed = tmp_path / "003.txt"
    changed.write_bytes(seed("003").read_bytes().replace(b"VARCHAR(255) NOT NULL", b"TEXT NOT NULL"))
    text_result = ingested("ingest", changed)
    assert "revised" in text_result.output
    assert "approved by" in text_result.output
    assert "voided" in text_result.output
    changed.write_bytes(seed("003").read_bytes())
    result = ingested("ingest", "--json", changed)
    (outcome,) = json.loads(result.output)
    assert (outcome["outcome"], outcome["revision"], outcome["approval_voided"]) == ("revised", 3, None)
    assert json.loads(ingested("show", "--json", P003).output)["status"] == "new"


def test_show_json_contract(ingested: Cli) -> None:
    data = json.loads(ingested("show", "--json", SEED_IDS["004"]).output)
    for key in (
        "id",
        "kind",
        "severity",
        "block_execution",
        "executable",
        "status",
        "digest",
        "files",
        "problems",
    ):
        assert key in data
    assert (data["kind"], data["severity"], data["block_execution"], data["executable"], data["status"]) == (
        "idea_implementation",
        6,
        False,
        True,
        "new",
    )
    assert [f["path"] for f in data["files"]][:2] == [
        "migrations/001_create_table.sql",
        "migrations/002_create_users_table.sql",
    ]
    first = data["files"][0]
    assert set(first) >= {"path", "language", "bytes", "sha256"}
    assert (first["language"], first["bytes"]) == ("sql", 532)
    assert data["problems"] == [
        {
            "code": "content.empty",
            "level": "warning",
            "message": "tests/metricsTest.js has no content; the file would be created empty",
            "path": "tests/metricsTest.js",
            "line": 74,
        }
    ]


def test_show_file_writes_exact_bytes(ingested: Cli) -> None:
    lines = seed("003").read_bytes().split(b"\n")
    result = ingested("show", P003, "--file", "generated_1.sql")
    assert result.stdout_bytes == b"".join(line + b"\n" for line in lines[9:31])
    missing = ingested("show", P003, "--file", "nope.sql")
    assert missing.exit_code == 2
    assert "its files: generated_1.sql" in missing.output


def test_show_human_output_lists_files_problems_and_content(ingested: Cli) -> None:
    result = ingested("show", SEED_IDS["004"], "--content")
    assert result.exit_code == 0
    for text in ("routes/webhooks.js", "Stripe webhook endpoints", "content.empty", "BETWE0N"):
        assert text in result.output


def test_unknown_id_exits_2(ingested: Cli) -> None:
    for args in (
        ("show", "fsar_nope"),
        ("approve", "fsar_nope"),
        ("reject", "fsar_nope"),
        ("log", "fsar_nope"),
    ):
        result = ingested(*args)
        assert result.exit_code == 2, args
        assert "no proposal with id 'fsar_nope'" in result.output


def test_approve_binds_to_digest_and_is_idempotent(ingested: Cli) -> None:
    digest = json.loads(ingested("show", "--json", P003).output)["digest"]
    result = ingested("approve", P003, "--by", "alice", "--note", "reviewed schema")
    assert result.exit_code == 0
    assert f"bound to digest {digest[:12]}" in result.output
    data = json.loads(ingested("show", "--json", P003).output)
    assert data["status"] == "approved"
    assert data["decision"]["by"] == "alice"
    assert data["decision"]["digest"] == digest
    again = ingested("approve", P003)
    assert again.exit_code == 0
    assert "already approved by alice" in again.output
    assert [e["event"] for e in json.loads(ingested("log", "--json", P003).output)] == [
        "ingested",
        "approved",
    ]


def test_approve_with_a_stale_or_short_digest_is_refused(ingested: Cli) -> None:
    digest = json.loads(ingested("show", "--json", P003).output)["digest"]
    for prefix in ("deadbeef", "", digest[:4]):
        result = ingested("approve", P003, "--digest", prefix)
        assert result.exit_code == 2, prefix
        assert "not what you reviewed" in result.output
    assert ingested("approve", P003, "--digest", digest[:8].upper()).exit_code == 0


def test_approve_checks_again_under_the_current_limits(
    ingested: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXECUTOR_MAX_FILE_BYTES", "100")
    again = ingested("ingest", seed("003"))
    assert "unchanged" in again.output
    result = ingested("approve", P003)
    assert result.exit_code == 2
    assert "not executable under the current configuration" in result.output
    assert "over the limit of 100 bytes" in result.output


def test_non_executable_proposals_cannot_be_approved(ingested: Cli) -> None:
    result = ingested("approve", SEED_IDS["000"])
    assert result.exit_code == 2
    assert "is not executable: its kind is self_improvement" in result.output


def test_blocked_proposal_needs_override_with_reason(ingested: Cli, tmp_path: Path) -> None:
    ingested("ingest", write_report(tmp_path, "b.txt", severity=50, blocked=True, ident="fsar_blocked"))
    refused = ingested("approve", "fsar_blocked", "--by", "alice")
    assert refused.exit_code == 2
    assert "blocked by its report" in refused.output
    assert "--override-block --reason" in refused.output
    assert ingested("approve", "fsar_blocked", "--by", "alice", "--override-block").exit_code == 2
    ok = ingested(
        "approve", "fsar_blocked", "--by", "alice", "--override-block", "--reason", "hotfix, reviewed"
    )
    assert ok.exit_code == 0
    assert "overridden" in ok.output
    log = json.loads(ingested("log", "--json", "fsar_blocked").output)
    assert log[-1]["detail"]["override_block_reason"] == "hotfix, reviewed"


def test_review_threshold_requires_by(ingested: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ingested("ingest", write_report(tmp_path, "r.txt", severity=30, ident="fsar_review"))
    refused = ingested("approve", "fsar_review")
    assert refused.exit_code == 2
    assert "severity 30, at or above the review threshold 30" in refused.output
    assert ingested("approve", "fsar_review", "--by", "bob").exit_code == 0
    monkeypatch.setenv("EXECUTOR_REVIEW_THRESHOLD", "5")
    assert ingested("approve", SEED_IDS["004"]).exit_code == 2


def test_reject_then_list_by_status(ingested: Cli) -> None:
    assert ingested("approve", P003).exit_code == 0
    result = ingested("reject", P003, "--by", "carol", "--note", "conflicts with 002")
    assert result.exit_code == 0
    assert json.loads(ingested("show", "--json", P003).output)["status"] == "rejected"
    assert [p["id"] for p in json.loads(ingested("list", "--json", "--status", "rejected").output)] == [P003]
    assert "already rejected" in ingested("reject", P003).output


def test_list_table_and_filters(ingested: Cli) -> None:
    table = ingested("list")
    assert table.exit_code == 0
    assert all(ident in table.output for ident in SEED_IDS.values())
    kinds = json.loads(ingested("list", "--json", "--kind", "self_improvement").output)
    assert {p["id"] for p in kinds} == {SEED_IDS["000"], SEED_IDS["001"]}
    assert ingested("list", "--status", "bogus").exit_code == 2


def test_log_lists_state_changes(ingested: Cli) -> None:
    ingested("approve", P003, "--by", "alice")
    out = ingested("log", P003).output
    assert "ingested" in out
    assert "approved" in out
    assert "alice" in out


def test_invalid_config_exits_2_naming_the_source(
    run_cli: Cli, monkeypatch: pytest.MonkeyPatch, executor_home: Path
) -> None:
    monkeypatch.setenv("EXECUTOR_REVIEW_THRESHOLD", "lots")
    result = run_cli("list")
    assert result.exit_code == 2
    assert "EXECUTOR_REVIEW_THRESHOLD" in result.output
    monkeypatch.delenv("EXECUTOR_REVIEW_THRESHOLD")
    executor_home.mkdir(parents=True)
    (executor_home / "config.toml").write_text("max_file_bytes = [\n")
    result = run_cli("list")
    assert result.exit_code == 2
    assert "config.toml" in result.output


def test_config_file_sets_limits(run_cli: Cli, executor_home: Path) -> None:
    executor_home.mkdir(parents=True)
    (executor_home / "config.toml").write_text("max_file_bytes = 100\n")
    result = run_cli("ingest", "--json", seed("003"))
    (outcome,) = json.loads(result.output)
    assert [p["code"] for p in outcome["problems"]] == ["content.too_large"]
    assert outcome["executable"] is False


def test_schema_drift_exits_3_naming_table_and_column(ingested: Cli, executor_home: Path) -> None:
    with sqlite3.connect(executor_home / "executor.db") as connection:
        connection.execute("ALTER TABLE proposals DROP COLUMN source")
    result = ingested("list")
    assert result.exit_code == 3
    assert "table 'proposals' has no column 'source'" in result.output


def test_debug_shows_tracebacks(ingested: Cli) -> None:
    from executor.errors import UnknownProposalError

    with pytest.raises(UnknownProposalError):
        ingested("--debug", "show", "fsar_nope")


# -- a real process, as CI calls it ---------------------------------------------


def test_real_process_exit_codes_and_json(executor_home: Path, tmp_path: Path) -> None:
    env = {"EXECUTOR_HOME": str(executor_home)}
    done = run_executor("ingest", SEEDS, env=env)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 5
    shown = run_executor("show", "--json", P003, env=env)
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["files"][0]["path"] == "generated_1.sql"
    missing = run_executor("show", "fsar_nope", env=env)
    assert missing.returncode == 2
    assert missing.stderr.startswith("executor: error: no proposal with id 'fsar_nope'")
    assert "Traceback" not in missing.stderr
    (tmp_path / "bad.md").write_text("nothing here")
    assert run_executor("ingest", tmp_path / "bad.md", env=env).returncode == 2
    assert run_executor("approve", P003, "--by", "ci", env=env).returncode == 0
    assert run_executor("approve", SEED_IDS["001"], env=env).returncode == 2


def test_real_process_unusable_store_exits_3(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_executor("list", env={"EXECUTOR_HOME": str(blocker / "home")})
    assert result.returncode == 3
    assert "cannot create the store directory" in result.stderr


def test_terminal_control_sequences_in_reports_are_shown_inert(run_cli: Cli, tmp_path: Path) -> None:
    text = (
        seed("003")
        .read_text(encoding="utf-8")
        .replace(SEED_IDS["003"], "fsar_esc")
        .replace("Make.com Scenario Generation", "Gen \x1b]0;pwned\x07\x1b[8mHIDDEN :lock: \u202eevil")
        .replace("email VARCHAR(255) UNIQUE", "email VARCHAR(255) UNIQUE -- \x1b[1A\x1b[2K")
    )
    (tmp_path / "esc.txt").write_text(text, encoding="utf-8")
    assert run_cli("ingest", tmp_path / "esc.txt").exit_code == 0
    for args in (
        ("show", "fsar_esc", "--content"),
        ("list",),
        ("show", "--json", "fsar_esc"),
        ("list", "--json"),
    ):
        out = run_cli(*args).output
        assert "\x1b" not in out, args
        assert "\u202e" not in out, args
        assert "\x07" not in out, args
    shown = run_cli("show", "fsar_esc").output
    assert "\\x1b]0;pwned\\x07" in shown
    assert ":lock:" in shown
    data = json.loads(run_cli("show", "--json", "fsar_esc").output)
    assert [p["code"] for p in data["problems"]] == ["content.control_char"]
    assert data["executable"] is False


@pytest.mark.parametrize(
    "args",
    [
        ("approve", P003, "--by", "x" * 300),
        ("approve", P003, "--note", "hidden \x1b[2K"),
        ("reject", P003, "--by", "a\x00b"),
        ("show", "fsar_x/../../y"),
        ("log", "fsar_1."),
    ],
)
def test_bad_arguments_are_refused_with_exit_2(ingested: Cli, args: tuple[str, ...]) -> None:
    result = ingested(*args)
    assert result.exit_code == 2
    assert "Invalid value" in result.output
    assert "\x1b" not in result.output


def test_real_process_undecodable_argument_exits_2(executor_home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "executor", "show", b"fsar_\xff"],
        capture_output=True,
        env={**os.environ, "EXECUTOR_HOME": str(executor_home)},
        check=False,
    )
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr


def test_ingest_into_a_closed_pipe_still_stores_every_report(executor_home: Path, tmp_path: Path) -> None:
    reports = tmp_path / "many"
    reports.mkdir()
    for n in range(40):
        write_report(reports, f"r{n:02d}.txt", ident=f"fsar_pipe_{n:02d}")
    command = f"{sys.executable} -m executor ingest {reports} | head -n 1"
    result = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "EXECUTOR_HOME": str(executor_home)},
    )
    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr
    listed = run_executor("list", "--json", env={"EXECUTOR_HOME": str(executor_home)})
    assert len(json.loads(listed.stdout)) == 40


def test_database_url_errors_never_echo_the_password(executor_home: Path) -> None:
    for url in ("postgres ql://u:s3cret@h/db", "postgresql+psycopg://u:s3cret@h:12ab/db"):
        result = run_executor("list", env={"EXECUTOR_HOME": str(executor_home), "EXECUTOR_DATABASE_URL": url})
        assert result.returncode == 3
        assert "s3cret" not in result.stderr
        assert "not a valid SQLAlchemy URL" in result.stderr


def test_home_with_url_special_characters(
    run_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "odd?name#x%41"
    monkeypatch.setenv("EXECUTOR_HOME", str(home))
    assert run_cli("ingest", seed("003")).exit_code == 0
    assert (home / "executor.db").is_file()
