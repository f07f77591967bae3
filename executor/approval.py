"""Who may approve what. The store records decisions; this decides if one may be made."""

from __future__ import annotations

from executor.content import Limits
from executor.errors import RefusedError
from executor.models import Level, Proposal
from executor.report import file_problems, set_problems


def check_approvable(
    proposal: Proposal,
    *,
    by: str | None,
    override_block: bool,
    reason: str | None,
    review_threshold: int,
    limits: Limits,
    digest_prefix: str | None = None,
) -> None:
    """Raise ``RefusedError`` saying why and how, unless ``proposal`` may be approved."""
    pid = proposal.id
    if digest_prefix is not None and (
        len(digest_prefix) < 8 or not proposal.digest.startswith(digest_prefix.lower())
    ):
        raise RefusedError(
            f"proposal {pid} has digest {proposal.digest[:12]}, not {digest_prefix!r}; it is not what you reviewed",
            hint=f"review it again with: executor show {pid}",
        )
    if not proposal.executable:
        errors = proposal.errors()
        why = (
            "; ".join(p.message for p in errors[:3])
            if errors
            else f"its kind is {proposal.kind_label or proposal.kind.value}, which is never executed"
        )
        raise RefusedError(f"proposal {pid} is not executable: {why}", hint=f"see: executor show {pid}")
    # The checks made at ingest ran under the configuration of that time; the
    # limits may have been tightened since (a same-digest re-ingest is a no-op).
    now = [p for f in proposal.files for p in file_problems(f, limits)] + set_problems(proposal.files, limits)
    errors = [p for p in now if p.level is Level.ERROR]
    if errors:
        raise RefusedError(
            f"proposal {pid} is not executable under the current configuration: "
            + "; ".join(p.message for p in errors[:3])
        )
    if override_block and not (reason and reason.strip()):
        raise RefusedError("--override-block needs --reason TEXT saying why the block is overridden")
    if proposal.block_execution and not override_block:
        raise RefusedError(
            f"proposal {pid} is blocked by its report (block_execution: true)",
            hint="to approve it anyway, add --override-block --reason TEXT; both are recorded",
        )
    severity = proposal.severity or 0
    if severity >= review_threshold and not (by and by.strip()):
        raise RefusedError(
            f"proposal {pid} has severity {severity}, at or above the review threshold {review_threshold}",
            hint="name the reviewer with --by WHO",
        )
