"""Path rules, one example per rule (the property tests cover the rest)."""

from __future__ import annotations

import pytest

from executor.paths import check_path, find_collisions


@pytest.mark.parametrize(
    "path",
    [
        "generated_1.sql",
        "migrations/001_create_table.sql",
        "routes/webhooks.js",
        ".gitignore",
        "a/.github/x.yml",
        "caf\u00e9.sql",
    ],
)
def test_ordinary_paths_pass(path: str) -> None:
    assert check_path(path) == []


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("", "empty"),
        ("/abs", "absolute"),
        ("C:/x", "absolute"),
        ("a/../b", "dotdot"),
        ("./a", "dot"),
        ("a//b", "empty_component"),
        ("a/", "trailing_slash"),
        (".git/config", "dotgit"),
        ("sub/.GiT/config", "dotgit"),
        (".git /x", "dotgit"),
        (".git../x", "dotgit"),
        (".g\u200cit/x", "dotgit"),
        ("\ufeff.git/x", "dotgit"),
        ("GIT~1/x", "dotgit"),
        ("GITMOD~1", "dotgit"),
        (".gitmodules", "git_metadata"),
        ("a/.GITATTRIBUTES", "git_metadata"),
        (".git::$INDEX_ALLOCATION/x", "windows_char"),
        ("a\\b", "backslash"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a\x7fb", "control"),
        ("a\u2028b", "control"),
        ("a\u200bb", "invisible"),
        ("a\U000e0001b", "invisible"),
        ("a\ue000b", "unassigned"),
        ("a\udcffb", "invalid_utf8"),
        ("e\u0301.sql", "not_nfc"),
        ("x" * 256, "component_too_long"),
        ("a/" * 2100 + "b", "too_long"),
        ("a/" * 64 + "b", "too_deep"),
        ("aux", "windows_reserved"),
        ("dir/COM1.txt", "windows_reserved"),
        ("lpt\u00b9", "windows_reserved"),
        ("COM0.log", "windows_reserved"),
        ("name.", "trailing_dot_space"),
        ("name ", "trailing_dot_space"),
        ("a<b", "windows_char"),
    ],
)
def test_each_rule(path: str, rule: str) -> None:
    rules = [v.rule for v in check_path(path)]
    assert rule in rules, rules


def test_messages_say_how_to_fix() -> None:
    (violation,) = check_path("a\\b.sql")
    assert "use '/'" in violation.message


def test_collisions_case_normalization_and_file_versus_directory() -> None:
    assert find_collisions(["Docs/A.sql", "docs/a.sql"]) == [
        ("Docs/A.sql", "docs/a.sql", "differ only by case or Unicode normalization")
    ]
    assert find_collisions(["caf\u00e9", "cafe\u0301"]) != []
    assert find_collisions(["a", "A/b"]) == [("a", "A/b", "one is a directory of the other")]
    assert find_collisions(["a/b", "a/c", "b"]) == []
