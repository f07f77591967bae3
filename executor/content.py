"""Content rules for untrusted file contents: text only, bounded, not a placeholder."""

from __future__ import annotations

import re
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits; the operator's config may change them, a proposal never."""

    max_file_bytes: int = 1 * MIB
    max_proposal_bytes: int = 10 * MIB


@dataclass(frozen=True, slots=True)
class ContentViolation:
    rule: str
    message: str
    line: int | None = None  # 1-based line within the file
    is_error: bool = True


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


# Lines that carry no code: comments in the languages proposals use, ellipses,
# and the usual stand-ins. A file made only of these is a placeholder. Matched
# against stripped lines, so the pattern has no leading or trailing \\s* to
# backtrack over (hostile input may hold megabyte-long lines).
_FILLER = re.compile(
    rb"(?://|#|--|/\*|\*(?:[\s/]|$)|\.\.\.|\xe2\x80\xa6).*|pass|todo|tbd|",
    re.IGNORECASE,
)


def _is_filler(line: bytes) -> bool:
    return _FILLER.fullmatch(line.strip()) is not None


# Controls no source file needs (tab, LF, CR and form feed are fine; NUL has
# its own rule) and the Trojan Source bidi overrides (CVE-2021-42574).
_HIDDEN = re.compile("[\x01-\x08\x0b\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def check_content(data: bytes, limits: Limits) -> list[ContentViolation]:
    """Everything wrong with one file's bytes."""
    out: list[ContentViolation] = []
    if len(data) > limits.max_file_bytes:
        out.append(
            ContentViolation(
                "too_large",
                f"is {len(data)} bytes, over the limit of {limits.max_file_bytes} bytes per file",
            )
        )
    nul = data.find(b"\0")
    if nul >= 0:
        out.append(
            ContentViolation(
                "nul_byte", f"contains a NUL byte at offset {nul}; only text is accepted", _line_of(data, nul)
            )
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        out.append(
            ContentViolation(
                "not_utf8",
                f"is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); only UTF-8 text is accepted",
                _line_of(data, exc.start),
            )
        )
    else:
        if hidden := _HIDDEN.search(text):
            code = ord(hidden[0])
            bidi = 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069
            out.append(
                ContentViolation(
                    "bidi_control" if bidi else "control_char",
                    f"contains {'bidirectional override' if bidi else 'control character'} U+{code:04X}, "
                    "which can hide or reorder code when it is read; remove it",
                    text.count("\n", 0, hidden.start()) + 1,
                )
            )
    if not data.strip():
        out.append(
            ContentViolation("empty", "has no content; the file would be created empty", is_error=False)
        )
    elif all(_is_filler(line) for line in data.splitlines()):
        out.append(
            ContentViolation(
                "placeholder",
                "holds only comments or placeholders, no code",
                is_error=False,
            )
        )
    return out
