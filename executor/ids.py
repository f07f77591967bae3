"""What a proposal id may be: it names a git branch (``proposals/<id>``) and a ref, so git's rules apply."""

from __future__ import annotations

import re

ID_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$")


def is_proposal_id(text: str) -> bool:
    """1-128 letters, digits, '.', '_', '-', starting and ending with a letter or digit; no '..', no '.lock' end."""
    return bool(ID_RE.match(text)) and ".." not in text and not text.endswith(".lock")
