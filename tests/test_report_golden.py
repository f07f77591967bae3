"""Golden tests: every file of every seed, extracted exactly as a careful reader would.

Expected contents are written as line ranges of the report (read off with
``cat -n``), so they are specified independently of the parser; a few sha256
values pin the bytes as well.
"""

from __future__ import annotations

import hashlib

import pytest

from executor.models import Kind, Level
from executor.report import parse_report
from tests.conftest import SEED_IDS, seed

# (path, first report line, last report line or None for empty, description)
GOLDEN: dict[str, list[tuple[str, int, int | None, str | None]]] = {
    "000": [],
    "001": [],
    "002": [("generated_1.sql", 10, 24, None)],
    "003": [("generated_1.sql", 10, 31, None)],
    "004": [
        ("migrations/001_create_table.sql", 10, 17, None),
        ("migrations/002_create_users_table.sql", 21, 26, None),
        ("migrations/003_create_metrics_table.sql", 30, 36, None),
        (
            "routes/webhooks.js",
            40,
            44,
            "Stripe webhook endpoints for post-payment confirmation actions (to be developed)",
        ),
        ("config/database.js", 48, 60, "Neon PostgreSQL database configuration (to be created)"),
        ("config/serverSetup.js", 64, 65, "Railway deployment and container setup (to be developed)"),
        (
            "tests/scenariosTest.js",
            69,
            71,
            "Django Test Suite for CRUD operations on Scenario model (to be developed)",
        ),
        (
            "tests/metricsTest.js",
            74,
            None,
            "LoadNinja stress tests on system performance for Stripe integration points and other "
            "endpoints to be developed, following Django Test Suite conventions as shown above in "
            "scenariosTest.js...",
        ),
    ],
}

PINNED_SHA256 = {
    ("003", "generated_1.sql"): hashlib.sha256(
        seed("003").read_bytes().split(b"\n\n", 2)[2].split(b"\n\nThis is for opportunity")[0] + b"\n"
    ).hexdigest(),
    ("004", "tests/metricsTest.js"): hashlib.sha256(b"").hexdigest(),
}


@pytest.mark.parametrize("prefix", sorted(GOLDEN))
def test_seed_files_are_extracted_exactly(prefix: str) -> None:
    data = seed(prefix).read_bytes()
    lines = data.split(b"\n")
    proposal = parse_report(data, name=seed(prefix).name)
    expected = []
    for path, first, last, description in GOLDEN[prefix]:
        content = b"" if last is None else b"".join(line + b"\n" for line in lines[first - 1 : last])
        expected.append((path, content, description, first, last if last is not None else first))
    got = [(f.path, f.content, f.description, f.line_start, f.line_end) for f in proposal.files]
    assert got == expected
    for (p, path), sha in PINNED_SHA256.items():
        if p == prefix:
            change = proposal.file(path)
            assert change is not None
            assert change.sha256 == sha


def test_seed_headers() -> None:
    expected = {
        "000": ("2026-01-02T19:18:11.553Z", Kind.SELF_IMPROVEMENT, None),
        "001": ("2026-01-02T11:48:04.825Z", Kind.SELF_IMPROVEMENT, None),
        "002": ("2026-01-01T04:58:37.733Z", Kind.IDEA_IMPLEMENTATION, "Automation Workflow Design"),
        "003": ("2026-01-02T19:12:25.611Z", Kind.IDEA_IMPLEMENTATION, "Make.com Scenario Generation"),
        "004": ("2026-01-02T20:13:28.646Z", Kind.IDEA_IMPLEMENTATION, "Make.com Scenario Library"),
    }
    for prefix, (timestamp, kind, opportunity) in expected.items():
        p = parse_report(seed(prefix).read_bytes())
        assert (p.id, p.timestamp, p.severity, p.block_execution) == (SEED_IDS[prefix], timestamp, 6, False)
        assert (p.kind, p.opportunity) == (kind, opportunity)
        assert p.risks[0] == "Slow failure: unnoticed degradation accumulating by " + (
            "2027-12-31" if prefix == "002" else "2028-01-02"
        )
        assert p.mitigations[-1] == "Prefer reversible rollouts; keep rollback artifacts warm and tested"
        assert len(p.risks) == len(p.mitigations) == 3
        assert p.executable is (kind is Kind.IDEA_IMPLEMENTATION)
        assert p.source_format == "markdown"


def test_seed_problems() -> None:
    for prefix in ("000", "001", "002", "003"):
        assert parse_report(seed(prefix).read_bytes()).problems == ()
    problems = parse_report(seed("004").read_bytes()).problems
    assert [(p.code, p.level, p.path, p.line) for p in problems] == [
        ("content.empty", Level.WARNING, "tests/metricsTest.js", 74)
    ]


def test_self_improvement_text_is_kept_and_never_executable() -> None:
    p = parse_report(seed("000").read_bytes())
    assert p.text.startswith("self_improvement:  To address the issues identified")
    assert p.text.endswith("future growth and improvements in the system.")
    assert p.files == ()
    assert not p.executable


def test_prose_after_the_last_block_is_not_a_file() -> None:
    p = parse_report(seed("004").read_bytes())
    assert all(b"docker compose" not in f.content for f in p.files)
    assert [f.language for f in p.files] == ["sql"] * 3 + ["javascript"] * 5
