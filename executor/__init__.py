"""proposal-executor: turn approved FSAR proposals into validated, reversible git changes.

Importing this package stays cheap: `executor --help` must not pull in the
store, Docker or git layers.
"""

from __future__ import annotations

__version__ = "0.1.0"
