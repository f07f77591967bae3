"""Every seed through every built-in plugin: the exact located outcome the issue expects."""

from __future__ import annotations

from pathlib import Path

import pytest
from executor_sandbox.pool import Sandboxes

from executor.config import Settings
from executor.plugin_api import EmptyTree
from executor.plugins import Plugins
from executor.report import parse_report
from executor.validation import ValidationReport, validate

pytestmark = pytest.mark.docker
pytest_plugins = ["executor.testing"]

SEEDS = Path(__file__).resolve().parent.parent / "examples" / "reports"


def run_seed(number: str, plugins: Plugins, sandboxes: Sandboxes) -> ValidationReport:
    path = next(SEEDS.glob(f"{number}_*.txt"))
    proposal = parse_report(path.read_bytes(), name=path.name)
    return validate(proposal.files, EmptyTree(), plugins, Settings(), sandboxes)


def outcome(
    report: ValidationReport,
) -> list[tuple[str, str, str, str | None, int | None, int | None, int | None]]:
    return [
        (d.plugin, d.severity.value, d.code, d.path, d.line, d.column, d.report_line)
        for d in report.diagnostics
    ]


def test_seed_003_passes_every_gate_with_a_proven_rollback(
    executor_plugins: Plugins, sandboxes: Sandboxes
) -> None:
    report = run_seed("003", executor_plugins, sandboxes)
    assert [(g.name, g.ok) for g in report.gates] == [("static", True), ("sandbox", True), ("rollback", True)]
    assert outcome(report) == []
    assert [(r.plugin, r.reversible, r.proven) for r in report.rollbacks] == [("sql", True, True)]


def test_seed_002_fails_at_its_trailing_comma(executor_plugins: Plugins, sandboxes: Sandboxes) -> None:
    report = run_seed("002", executor_plugins, sandboxes)
    assert not report.ok
    assert outcome(report) == [
        ("sql", "error", "sql.42601", "generated_1.sql", 5, 30, 14),
        ("sql", "error", "sql.mysql-on-update", "generated_1.sql", 14, 54, 23),
    ]


def test_seed_004_fails_in_each_sql_file_and_warns_on_its_javascript(
    executor_plugins: Plugins, sandboxes: Sandboxes
) -> None:
    report = run_seed("004", executor_plugins, sandboxes)
    assert [(g.name, g.ok) for g in report.gates] == [
        ("static", False),
        ("sandbox", False),
        ("rollback", False),
    ]
    assert report.claims["routes/webhooks.js"] == ["javascript"]
    assert outcome(report) == [
        ("sql", "error", "sql.42601", "migrations/001_create_table.sql", 5, 54, 14),
        ("sql", "error", "sql.slash-comment", "migrations/001_create_table.sql", 5, 72, 14),
        ("sql", "error", "sql.42883", "migrations/002_create_users_table.sql", 3, 65, 23),
        ("sql", "error", "sql.slash-comment", "migrations/003_create_metrics_table.sql", 4, 18, 33),
        ("sql", "error", "sql.mysql-on-update", "migrations/003_create_metrics_table.sql", 6, 41, 35),
        ("javascript", "warning", "js.undeclared-package", "routes/webhooks.js", 1, 24, 40),
        ("javascript", "warning", "js.undeclared-package", "config/database.js", 1, 26, 48),
        ("javascript", "warning", "js.undeclared-package", "config/database.js", 2, 9, 49),
        ("javascript", "warning", "js.undeclared-package", "tests/scenariosTest.js", 1, 57, 69),
        ("javascript", "warning", "js.empty", "tests/metricsTest.js", None, None, 74),
    ]
    assert report.rollbacks == []
