"""Report forms beyond the seeds: encodings, line endings, JSON siblings, broken input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from executor.content import Limits
from executor.errors import ReportError
from executor.models import Kind, Level
from executor.report import is_malformed, parse_report
from tests.conftest import SEED_IDS, seed

HEADER = "# FSAR Proposal Report\n- id: fsar_test\n- timestamp: 2026-01-02T19:18:11.553Z\n- severity: 6\n- block_execution: false\n- proposal:\n\n"
TRAILER = "\n## Risks\n- r1\n\n## Mitigations\n- m1"


def report(body: str, header: str = HEADER) -> bytes:
    return (header + body + TRAILER).encode("utf-8")


def codes(data: bytes, **kw: object) -> list[str]:
    return [p.code for p in parse_report(data, **kw).problems]  # type: ignore[arg-type]


def json_sibling(prefix: str) -> bytes:
    """The JSON sibling of a seed, built the way the generator writes it."""
    text = seed(prefix).read_text(encoding="utf-8")
    proposal = text.split("- proposal:\n", 1)[1].split("\n## Risks", 1)[0].strip()
    p = parse_report(seed(prefix).read_bytes())
    return json.dumps(
        {
            "id": SEED_IDS[prefix],
            "timestamp": p.timestamp,
            "proposal": proposal,
            "severity": 6,
            "risks": list(p.risks),
            "mitigations": list(p.mitigations),
            "block_execution": False,
        }
    ).encode()


@pytest.mark.parametrize("prefix", ["000", "002", "003", "004"])
def test_json_sibling_is_the_same_proposal(prefix: str) -> None:
    markdown = parse_report(seed(prefix).read_bytes(), name="r.txt")
    sibling = parse_report(json_sibling(prefix), name="r.json")
    assert sibling.source_format == "json"
    assert sibling.digest == markdown.digest
    assert [(f.path, f.content, f.description) for f in sibling.files] == [
        (f.path, f.content, f.description) for f in markdown.files
    ]
    # JSON line numbers count lines of the proposal string; markdown's start 7 lines later.
    assert [f.line_start + 7 for f in sibling.files] == [f.line_start for f in markdown.files]


def test_crlf_report_keeps_crlf_in_content_and_reads_the_same_structure() -> None:
    lf = parse_report(seed("004").read_bytes())
    crlf = parse_report(seed("004").read_bytes().replace(b"\n", b"\r\n"))
    assert [f.path for f in crlf.files] == [f.path for f in lf.files]
    assert [f.content for f in crlf.files] == [f.content.replace(b"\n", b"\r\n") for f in lf.files]
    assert [f.description for f in crlf.files] == [f.description for f in lf.files]
    assert crlf.text == lf.text
    assert crlf.problems == lf.problems


def test_bom_is_framing_not_content() -> None:
    plain = parse_report(seed("003").read_bytes())
    bom = parse_report(b"\xef\xbb\xbf" + seed("003").read_bytes())
    assert bom.digest == plain.digest
    assert parse_report(b"\xef\xbb\xbf" + json_sibling("003"), name="x.json").digest == plain.digest


def test_tabs_and_trailing_spaces_are_kept_byte_exact() -> None:
    body = "idea_implementation: Create or update the file a.py with this complete content:\n\t\ndef f():\t \n\treturn 1  \n \n\nThis is for opportunity: X\n"
    p = parse_report(report(body))
    assert p.files[0].content == b"def f():\t \n\treturn 1  \n"
    assert p.opportunity == "X"


def test_fenced_content_with_info_string_is_kept_inside_the_fence() -> None:
    body = (
        "idea_implementation: Here you go.\n\n===FILE:src/app.py ===\n```python\n\nimport os\n"
        "===FILE:not/a/marker.py ===\nThis is for opportunity: inside\n```\n\nMore prose.\n"
    )
    p = parse_report(report(body))
    assert [(f.path, f.content) for f in p.files] == [
        ("src/app.py", b"\nimport os\n===FILE:not/a/marker.py ===\nThis is for opportunity: inside\n")
    ]
    assert p.opportunity is None


def test_fence_inside_fenced_content_needs_a_longer_closing_fence() -> None:
    body = "idea_implementation:\n===FILE:README.md ===\n````markdown\n# T\n```sh\nls\n```\n````\n"
    p = parse_report(report(body))
    assert p.files[0].content == b"# T\n```sh\nls\n```\n"
    assert p.problems == ()


def test_unclosed_fence_is_an_error() -> None:
    body = "idea_implementation:\n===FILE:a.sql ===\n```sql\nSELECT 1;\n"
    assert "block.unclosed" in codes(report(body))


def test_block_ends_at_next_marker_without_a_fence() -> None:
    body = "idea_implementation:\n===FILE:a.sql ===\nSELECT 1;\n\n===FILE:b.sql ===\nSELECT 2;\n```\n"
    p = parse_report(report(body))
    assert [(f.path, f.content) for f in p.files] == [("a.sql", b"SELECT 1;\n"), ("b.sql", b"SELECT 2;\n")]


def test_backquoted_path_in_create_form() -> None:
    body = (
        "idea_implementation: Create or update the file `db/x.sql` with this complete content:\n\nSELECT 1;\n"
    )
    assert parse_report(report(body)).files[0].path == "db/x.sql"


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("/etc/passwd", "path.absolute"),
        ("../outside.sql", "path.dotdot"),
        ("a/../../b.sql", "path.dotdot"),
        (".git/hooks/pre-commit", "path.dotgit"),
        (".GIT/config", "path.dotgit"),
        ("a/.git./x", "path.dotgit"),
        ("GIT~1/config", "path.dotgit"),
        ("a\\b.sql", "path.backslash"),
        ("a//b.sql", "path.empty_component"),
        ("con.sql", "path.windows_reserved"),
        ("x" * 256 + ".sql", "path.component_too_long"),
    ],
)
def test_unsafe_paths_make_the_proposal_non_executable(path: str, rule: str) -> None:
    body = f"idea_implementation:\n===FILE:{path} ===\nSELECT 1;\n```\n"
    p = parse_report(report(body))
    assert rule in [q.code for q in p.problems]
    assert not p.executable
    problem = next(q for q in p.problems if q.code == rule)
    assert problem.path == path
    assert problem.line == 9  # the ===FILE line: the header takes lines 1-7


def test_control_character_in_path_is_refused_and_shown_escaped() -> None:
    p = parse_report(report("idea_implementation:\n===FILE:a\x01b.sql ===\nSELECT 1;\n```\n"))
    assert "path.control" in [q.code for q in p.problems]
    assert not p.executable


def test_duplicate_and_case_colliding_paths() -> None:
    body = "idea_implementation:\n===FILE:a.sql ===\nSELECT 1;\n```\n===FILE:a.sql ===\nSELECT 2;\n```\n===FILE:A.SQL ===\nSELECT 3;\n```\n===FILE:a.sql/x ===\nSELECT 4;\n```\n"
    found = codes(report(body))
    assert found.count("path.duplicate") == 1
    assert found.count("path.collision") == 2  # A.SQL vs a.sql; a.sql is a directory of a.sql/x


def test_non_utf8_and_nul_content_are_refused_with_their_line() -> None:
    body = b"idea_implementation:\n===FILE:a.sql ===\nSELECT 1;\nSELECT '\xff';\nSELECT '\x00';\n```\n"
    p = parse_report(HEADER.encode() + body + TRAILER.encode())
    assert {q.code: q.line for q in p.problems} == {"content.not_utf8": 11, "content.nul_byte": 12}
    assert p.files[0].content == b"SELECT 1;\nSELECT '\xff';\nSELECT '\x00';\n"
    assert not p.executable


def test_size_limits_are_configurable() -> None:
    body = (
        "idea_implementation:\n===FILE:a.sql ===\n"
        + "SELECT 1;\n" * 20
        + "```\n===FILE:b.sql ===\nSELECT 2;\n```\n"
    )
    assert "content.too_large" in codes(report(body), limits=Limits(max_file_bytes=100))
    assert "proposal.too_large" in codes(report(body), limits=Limits(max_proposal_bytes=150))
    assert codes(report(body)) == []


def test_placeholder_only_content_is_a_warning() -> None:
    body = "idea_implementation:\n===FILE:a.js ===\n// TODO: implement\n/* later */\n...\n```\n"
    p = parse_report(report(body))
    assert [(q.code, q.level) for q in p.problems] == [("content.placeholder", Level.WARNING)]
    assert p.executable


def test_unknown_kind_is_kept_with_a_problem() -> None:
    p = parse_report(report("config_change: set x to 3\n"))
    assert (p.kind, p.kind_label) == (Kind.UNKNOWN, "config_change")
    assert [q.code for q in p.problems] == ["kind.unknown"]
    assert not p.executable
    assert not is_malformed(p)


def test_idea_without_files_is_not_executable() -> None:
    p = parse_report(report("idea_implementation: we should add caching.\n"))
    assert [q.code for q in p.problems] == ["proposal.no_files"]
    assert not p.executable


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (HEADER.replace("- severity: 6\n", ""), "header.missing_severity"),
        (HEADER.replace("- severity: 6", "- severity: high"), "header.invalid_severity"),
        (HEADER.replace("- block_execution: false\n", ""), "header.missing_block_execution"),
        (
            HEADER.replace("- block_execution: false", "- block_execution: maybe"),
            "header.invalid_block_execution",
        ),
        (HEADER.replace("- proposal:\n", ""), "header.missing_proposal"),
    ],
)
def test_malformed_header_fields_are_problems(header: str, code: str) -> None:
    body = "idea_implementation: Create or update the file a.sql with this complete content:\n\nSELECT 1;\n"
    p = parse_report(report(body, header))
    assert code in [q.code for q in p.problems]
    assert is_malformed(p)
    assert not p.executable


def test_bad_timestamp_is_a_warning_only() -> None:
    p = parse_report(report("self_improvement: x\n", HEADER.replace("2026-01-02T19:18:11.553Z", "yesterday")))
    assert [(q.code, q.level) for q in p.problems] == [("header.invalid_timestamp", Level.WARNING)]


def test_blocked_and_severity_header_values() -> None:
    p = parse_report(report("self_improvement: x\n", HEADER.replace("6", "50").replace("false", "true")))
    assert (p.severity, p.block_execution) == (50, True)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"just some text",
        b"# FSAR Proposal Report\n- timestamp: 2026\n",
        b"# FSAR Proposal Report\n- id: has spaces\n",
        b"# FSAR Proposal Report\n- id: ../../etc\n",
        b"# FSAR Proposal Report\n- id: fsar_1.\n",
        b"# FSAR Proposal Report\n- id: x.lock\n",
        b"{not json",
        b"[1, 2]",
        b'{"proposal": "x"}',
    ],
)
def test_unusable_reports_raise_a_report_error_naming_the_file(data: bytes) -> None:
    with pytest.raises(ReportError, match=r"bad\.md"):
        parse_report(data, name="bad.md")


def test_json_with_wrong_types_is_recorded_not_raised() -> None:
    data = json.dumps(
        {"id": "fsar_x", "proposal": 3, "severity": "6", "block_execution": "false", "risks": 5, "extra": 1}
    )
    p = parse_report(data.encode(), name="x.json")
    assert {q.code for q in p.problems} >= {
        "header.missing_proposal",
        "header.invalid_risks",
        "header.unknown_field",
    }
    assert (p.severity, p.block_execution) == (6, False)


def test_heading_inside_file_content_does_not_end_the_proposal() -> None:
    body = "idea_implementation:\n===FILE:docs/x.md ===\n```markdown\n## Risks\n- none\nmore text\n```\n"
    p = parse_report(report(body))
    assert p.files[0].content == b"## Risks\n- none\nmore text\n"
    assert p.risks == ("r1",)


# -- boundaries a careful reader draws (review findings) --------------------------


def test_bare_opening_fence_with_content_is_a_fenced_block() -> None:
    body = "idea_implementation: Create or update the file a.sql with this complete content:\n\n```\nDROP TABLE users;\n```\n\nThis is for opportunity: X\n"
    p = parse_report(report(body))
    assert p.files[0].content == b"DROP TABLE users;\n"
    assert p.problems == ()


def test_bare_fence_then_blank_line_closes_an_empty_block() -> None:
    body = "idea_implementation:\n===FILE:a.js ===  // later\n```\n\n### Notes\nprose\n"
    p = parse_report(report(body))
    assert (p.files[0].content, p.files[0].description) == (b"", "later")
    assert [q.code for q in p.problems] == ["content.empty"]


def test_unfenced_block_running_into_a_snippet_is_ambiguous() -> None:
    body = "idea_implementation:\n===FILE:deploy.sh ===\necho build\n\n### Final Deployment Code\n```bash\ncurl http://x | sh\n```\n"
    p = parse_report(report(body))
    assert "block.ambiguous_end" in [q.code for q in p.problems]
    assert not p.executable


def test_stray_closing_fence_in_prose_is_an_error() -> None:
    body = "idea_implementation:\n===FILE:README.md ===\n```markdown\n# T\n```\nmore\n```\n"
    p = parse_report(report(body))
    assert "block.stray_fence" in [q.code for q in p.problems]
    assert not p.executable


def test_marker_phrase_inside_content_or_prose_does_not_start_a_file() -> None:
    body = (
        "idea_implementation: Create or update the file a.sql with this complete content:\n\n"
        "SELECT 1; -- later we will create or update the file .github/x.yml with this complete content:\n"
        "SELECT 2;\n\nThis is for opportunity: X\n"
    )
    p = parse_report(report(body))
    assert [f.path for f in p.files] == ["a.sql"]
    assert p.files[0].content.endswith(b"SELECT 2;\n")
    prose = "idea_implementation: We will not create or update the file config/secret.js with this complete content: ever.\n===FILE:a.sql ===\nSELECT 1;\n```\n"
    q = parse_report(report(prose))
    assert [f.path for f in q.files] == ["a.sql"]
    assert [x.code for x in q.problems] == ["block.midline_marker"]


def test_content_running_to_the_end_is_unclosed() -> None:
    body = "idea_implementation:\n===FILE:a.sql ===\nSELECT 1;\n\nSome closing words.\n"
    assert "block.unclosed" in codes(report(body))


def test_create_form_files_may_follow_each_other() -> None:
    body = (
        "idea_implementation: Create or update the file a.sql with this complete content:\n\nSELECT 1;\n\n"
        "Create or update the file b.sql with this complete content:\n\nSELECT 2;\n\nThis is for opportunity: X\n"
    )
    p = parse_report(report(body))
    assert [(f.path, f.content) for f in p.files] == [("a.sql", b"SELECT 1;\n"), ("b.sql", b"SELECT 2;\n")]
    assert p.problems == ()


# -- hostile encodings and numbers --------------------------------------------------


def test_json_lone_surrogates_become_invalid_bytes_not_crashes() -> None:
    proposal = "idea_implementation:\n===FILE:a.sql ===\nSELECT '\ud800';\n```\n"
    data = json.dumps(
        {
            "id": "fsar_s",
            "timestamp": "\ud800",
            "proposal": proposal,
            "severity": 6,
            "block_execution": False,
            "risks": ["\udfff"],
            "mitigations": [],
        }
    )
    p = parse_report(data.encode(), name="s.json")
    assert "content.not_utf8" in [q.code for q in p.problems]
    assert not p.executable
    shown = p.model_dump(mode="json", exclude={"files": {"__all__": {"content"}}})
    json.dumps(shown, ensure_ascii=False).encode("utf-8")  # every string kept is encodable


def test_deeply_nested_json_is_a_report_error() -> None:
    with pytest.raises(ReportError, match=r"deep\.json"):
        parse_report(b"[" * 200_000, name="deep.json")


@pytest.mark.parametrize("value", ["9" * 5000, str(2**40), "-1", "\u0663"])
def test_out_of_range_severity_is_a_problem(value: str) -> None:
    p = parse_report(report("self_improvement: x\n", HEADER.replace("- severity: 6", f"- severity: {value}")))
    assert [q.code for q in p.problems] == ["header.invalid_severity"]
    assert p.severity is None


def test_hostile_long_lines_parse_in_linear_time() -> None:
    """Each line below made an earlier regex backtrack quadratically (minutes per report).

    Run in a child process with a deadline far above linear cost (~0.1 s), so a
    regression fails instead of hanging the suite.
    """
    code = """
from executor.report import parse_report
n = 300_000
head = b"# FSAR Proposal Report\\n- id: fsar_x\\n- severity: 6\\n- block_execution: false\\n- proposal:\\n\\nidea_implementation:\\n"
for line in [b"===FILE:a" + b" " * n + b"b", b"This is for opportunity:" + b" " * n + b"x",
             b"- key" + b" " * n, b"Create or update the file " + b"a " * n, b"   " * n + b"x",
             b"a" * n + b" ", b"*" + b" " * n + b"x", b"~" * n + b"`", b"`" * n + b"x"]:
    parse_report(head + line + b"\\n```\\n")
    parse_report(head + b"===FILE:a.sql ===\\n" + line + b"\\n```\\n")
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_glob_lines_are_not_taken_for_comments() -> None:
    body = "idea_implementation:\n===FILE:x.attributes ===\n*.sql text eol=lf\n```\n"
    assert "content.placeholder" not in codes(report(body))


@pytest.mark.parametrize(
    ("char", "code"),
    [
        ("\x1b", "content.control_char"),
        ("\x7f", "content.control_char"),
        ("\u202e", "content.bidi_control"),
        ("\u2066", "content.bidi_control"),
    ],
)
def test_hidden_characters_in_content_are_refused(char: str, code: str) -> None:
    body = f"idea_implementation:\n===FILE:a.js ===\nconst ok = 1;\nconst s = 'x{char}y';\n```\n"
    p = parse_report(report(body))
    assert [(q.code, q.line) for q in p.problems] == [(code, 11)]
    assert not p.executable


def test_tab_cr_and_form_feed_are_ordinary_text() -> None:
    body = "idea_implementation:\n===FILE:a.py ===\nx = 1\t# tab\r\n\x0cy = 2\n```\n"
    assert codes(report(body)) == []


def test_git_metadata_files_are_a_warning_settled_at_write_time() -> None:
    p = parse_report(report("idea_implementation:\n===FILE:.gitattributes ===\n*.sql text\n```\n"))
    assert [(q.code, q.level) for q in p.problems] == [("path.git_metadata", Level.WARNING)]
    assert p.executable
