"""Path rules for untrusted proposal paths.

A path from a report is executable only if it is a normalized, relative POSIX
path that names the same single file inside the repository on every
filesystem git runs on (Linux, macOS HFS+/APFS, Windows NTFS/FAT). The rules
follow git's own checks for hostile tree entries (``verify_path``,
``is_ntfs_dotgit``, ``is_hfs_dotgit``) and refuse anything ambiguous.

``check_path`` is pure and runs at parse time; the write step runs it again
against the real tree, together with ``lstat`` checks that only it can make.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096
MAX_DEPTH = 64  # directories deep; git itself refuses trees deeper than core.maxTreeDepth (4096 in 2.46)

_WINDOWS_INVALID = frozenset('<>:"|?*')
_WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul", "conin$", "conout$"]
    + [f"{dev}{n}" for dev in ("com", "lpt") for n in "0123456789\u00b9\u00b2\u00b3"]
)
#: Files git itself interprets; a proposal may write them only where the
#: repository's executor config allows it (checked at write time).
GIT_METADATA_FILES = frozenset([".gitmodules", ".gitattributes"])
_ASCII_SUSPECTS = re.compile(r'[\x00-\x1f\x7f\\<>:"|?*]')
# 8.3 short names NTFS may give .git / .gitmodules (git's is_ntfs_dotgit).
_SHORT_NAME = re.compile(r"^(git|gitmod|gitatt)~\d+$")


@dataclass(frozen=True, slots=True)
class PathViolation:
    """One broken rule: ``rule`` is stable, ``message`` says how to fix it."""

    rule: str
    message: str
    is_error: bool = True


def _ignorable(ch: str) -> bool:
    # Format characters (zero-width joiners, bidi controls, BOM) are dropped
    # by HFS+ when comparing names, so ".g\u200cit" is ".git" there.
    return unicodedata.category(ch) == "Cf"


def _forbidden_char(ch: str) -> str | None:
    cat = unicodedata.category(ch)
    if cat == "Cc":
        return "control"
    if cat in ("Zl", "Zp"):
        return "control"
    if cat == "Cs":
        return "invalid_utf8"
    if cat == "Cf":
        return "invisible"
    if cat in ("Cn", "Co"):
        return "unassigned"
    return None


def _dotgit_like(component: str) -> bool:
    """True if some filesystem may resolve ``component`` to ``.git``-ish names."""
    visible = component if component.isascii() else "".join(ch for ch in component if not _ignorable(ch))
    folded = visible.rstrip(". ").casefold()
    return folded == ".git" or _SHORT_NAME.match(folded) is not None


def _reserved_windows(component: str) -> bool:
    stem = component.split(".", 1)[0].rstrip(" ").casefold()
    return stem in _WINDOWS_RESERVED


def check_path(path: str) -> list[PathViolation]:
    """Every rule ``path`` breaks; executable when none of them is an error.

    Warnings (``is_error=False``) name rules only the write step can settle
    against the target repository, such as git metadata files.
    """
    if path == "":
        return [PathViolation("empty", "the path is empty; name a file relative to the repository")]
    out: list[PathViolation] = []
    seen: set[str] = set()

    def add(rule: str, message: str, *, is_error: bool = True) -> None:
        if rule not in seen:
            seen.add(rule)
            out.append(PathViolation(rule, message, is_error))

    # Most paths are plain ASCII: look only at the characters that can offend.
    suspects = _ASCII_SUSPECTS.findall(path) if path.isascii() else path
    for ch in suspects:
        kind = _forbidden_char(ch)
        if kind == "control":
            add("control", f"contains control character U+{ord(ch):04X}; remove it")
        elif kind == "invalid_utf8":
            add("invalid_utf8", "is not valid UTF-8; use a UTF-8 file name")
        elif kind == "invisible":
            add("invisible", f"contains invisible format character U+{ord(ch):04X}; remove it")
        elif kind == "unassigned":
            add(
                "unassigned",
                f"contains U+{ord(ch):04X}, an unassigned or private-use code point other systems may alias",
            )
        elif ch == "\\":
            add("backslash", "contains a backslash; use '/' as the separator")
        elif ch in _WINDOWS_INVALID:
            add("windows_char", f"contains {ch!r}, which Windows cannot store; rename the file")
    if path.startswith("/"):
        add("absolute", "is absolute; give it relative to the repository root")
    elif re.match(r"^[A-Za-z]:", path):
        add("absolute", "starts with a drive letter; give it relative to the repository root")
    if not path.isascii() and "invalid_utf8" not in seen and not unicodedata.is_normalized("NFC", path):
        add("not_nfc", "is not in Unicode NFC form; macOS would store it under another name")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        add("too_long", f"is longer than {MAX_PATH_BYTES} bytes")

    components = path.split("/")
    if len(components) > MAX_DEPTH:
        add("too_deep", f"is {len(components)} directories deep; at most {MAX_DEPTH} are written")
    for index, comp in enumerate(components):
        if comp == "":
            if index == 0 and path.startswith("/"):
                continue
            if index == len(components) - 1 and index > 0:
                add("trailing_slash", "ends with '/'; name a file, not a directory")
            else:
                add("empty_component", "has an empty component ('//'); remove the extra '/'")
            continue
        if comp == "..":
            add("dotdot", "has a '..' component, which can escape the repository; remove it")
            continue
        if comp == ".":
            add("dot", "has a '.' component; write the normalized path without it")
            continue
        if _dotgit_like(comp):
            add("dotgit", f"has a component {comp!r} that git or the filesystem treats as .git")
            continue
        if comp.casefold() in GIT_METADATA_FILES:
            add(
                "git_metadata",
                f"writes {comp!r}, which changes how git reads the repository; "
                "it is written only where the target repository's executor config allows it",
                is_error=False,
            )
        if len(comp.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            add("component_too_long", f"has a component over {MAX_COMPONENT_BYTES} bytes")
        if comp[-1] in ". ":
            add("trailing_dot_space", f"component {comp!r} ends with a dot or space; Windows drops it")
        if _reserved_windows(comp):
            add("windows_reserved", f"component {comp!r} is a reserved device name on Windows")
    return out


def collision_key(path: str) -> str:
    """Names that case-insensitive or normalizing filesystems treat as one file."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", path).casefold())


def find_collisions(paths: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(first, second, why)`` for distinct paths that cannot both be files.

    Either they land on the same file on some filesystem (case folding,
    Unicode normalization), or one is a directory of the other.
    """
    first: dict[str, str] = {}
    pairs: list[tuple[str, str, str]] = []
    for p in paths:
        key = collision_key(p)
        other = first.setdefault(key, p)
        if other != p:
            pairs.append((other, p, "differ only by case or Unicode normalization"))
    keys = sorted(first)
    key_set = set(keys)
    for key in keys:
        parts = key.split("/")
        for n in range(1, len(parts)):
            prefix = "/".join(parts[:n])
            if prefix in key_set:
                pairs.append((first[prefix], first[key], "one is a directory of the other"))
    return pairs
