"""Property tests: the parser never crashes, and no unsafe path ever passes."""

from __future__ import annotations

import os
import posixpath
import unicodedata
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.errors import ReportError
from executor.paths import check_path, collision_key, find_collisions
from executor.report import parse_report, split_lines
from tests.conftest import SEED_FILES

SEED_BYTES = [p.read_bytes() for p in SEED_FILES]

# Lines that steer the parser: markers, fences, trailers, headers, junk.
TRICKY_LINES = [
    "```",
    "```sql",
    "````",
    "~~~",
    "===FILE:a.sql ===",
    "===FILE:../x ===  // d",
    "===FILE: ===",
    "Create or update the file b.js with this complete content:",
    "This is for opportunity: X",
    "Make sure the file is complete, working, and production-ready.",
    "## Risks",
    "## Mitigations",
    "- proposal:",
    "- id: fsar_other",
    "idea_implementation:",
    "",
    "\r",
    "\x00",
    "\udcff",
]


def check_invariants(data: bytes) -> None:
    try:
        proposal = parse_report(data)
    except ReportError:
        return
    line_count = max(len(split_lines(data.decode("utf-8", "surrogateescape"))), 1)
    for change in proposal.files:
        assert 1 <= change.header_line <= line_count
        assert change.header_line <= change.line_start <= change.line_end + 1
        assert change.line_end <= line_count
    if proposal.executable:
        for change in proposal.files:
            assert check_path(change.path) == []
            change.content.decode("utf-8")
            assert b"\0" not in change.content
        assert not find_collisions(f.path for f in proposal.files)
        assert len({f.path for f in proposal.files}) == len(proposal.files)
    assert len(proposal.digest) == 64


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    check_invariants(data)


@given(st.text(max_size=2000))
def test_arbitrary_text_never_crashes(text: str) -> None:
    check_invariants(text.encode("utf-8", "surrogatepass"))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SEED_BYTES),
    st.lists(
        st.tuples(st.integers(min_value=0), st.sampled_from(TRICKY_LINES) | st.text(max_size=40)),
        max_size=12,
    ),
    st.booleans(),
)
def test_mutated_seeds_never_crash(seed_bytes: bytes, inserts: list[tuple[int, str]], crlf: bool) -> None:
    lines = seed_bytes.split(b"\n")
    for position, line in inserts:
        lines.insert(position % (len(lines) + 1), line.encode("utf-8", "surrogateescape"))
    data = (b"\r\n" if crlf else b"\n").join(lines)
    check_invariants(data)


COMPONENT = st.sampled_from(
    [
        "a",
        "b.sql",
        ".",
        "..",
        "",
        ".git",
        ".GIT",
        ".git.",
        ".git ",
        "git~1",
        "GIT~2",
        ".gitmodules",
        "con",
        "NUL.txt",
        "a:b",
        "x\\y",
        "d\u200c",
        ".g\u200cit",
        "e\u0301",
        "\u00e9",
        "ok.py",
        "~",
        " ",
    ]
) | st.text(max_size=12)


@given(st.lists(COMPONENT, min_size=1, max_size=6), st.booleans())
def test_no_accepted_path_escapes_or_touches_git(components: list[str], absolute: bool) -> None:
    path = ("/" if absolute else "") + "/".join(components)
    if check_path(path):
        return
    parts = path.split("/")
    assert not path.startswith("/")
    assert all(part not in ("", ".", "..") for part in parts)
    assert posixpath.normpath(path) == path
    root = "/repo"
    assert posixpath.normpath(posixpath.join(root, path)).startswith(root + "/")
    for part in parts:
        bare = "".join(ch for ch in part if unicodedata.category(ch) != "Cf").rstrip(". ").casefold()
        assert bare != ".git"
        assert not bare.startswith("git~")
        assert "\\" not in part
        assert ":" not in part
        assert all(unicodedata.category(ch)[0] != "C" for ch in part)
    assert unicodedata.is_normalized("NFC", path)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(COMPONENT, min_size=1, max_size=4))
def test_accepted_paths_stay_inside_a_real_directory(tmp_path: Path, components: list[str]) -> None:
    path = "/".join(components)
    if check_path(path):
        return
    root = tmp_path / "repo"
    root.mkdir(exist_ok=True)
    resolved = Path(os.path.realpath(root / path))
    assert resolved.is_relative_to(root.resolve())
    assert resolved != root.resolve()


@given(st.text(min_size=1, max_size=20))
def test_collision_key_merges_case_and_normalization_variants(name: str) -> None:
    key = collision_key(name)
    assert collision_key(unicodedata.normalize("NFD", name)) == key
    assert collision_key(name.casefold()) == key
