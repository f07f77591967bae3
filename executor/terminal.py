"""Untrusted text made safe to store and inert before it reaches a terminal.

Report text may carry C0/C1 controls (ESC sequences can move the cursor and
erase lines a reviewer should see) and bidirectional overrides that reorder
what is displayed. Every report-derived string printed for people goes
through ``inert``; JSON output is ASCII-escaped instead.
"""

from __future__ import annotations

import io
import os
import re
import sys

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(text: str, *, multiline: bool = False) -> str:
    """``text`` with every terminal-active character shown as an escape.

    Newlines and tabs are kept when ``multiline``; otherwise a newline is shown
    as ``\\n`` so one value stays on one line.
    """
    shown = _UNSAFE.sub(_visible, text)
    if not multiline:
        shown = shown.replace("\n", "\\n").replace("\t", " ")
    return shown


def storable(text: str) -> str:
    """Text safe to store and print: undecodable bytes and NUL made visible.

    Reports are decoded with ``surrogateescape`` so file contents keep their
    exact bytes; strings kept for display must not carry those surrogates.
    """
    if text.isascii() and "\0" not in text:
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace").replace("\0", "\\x00")


def silence_stdout() -> None:
    """After the reader of our stdout went away (``| head``), write nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
