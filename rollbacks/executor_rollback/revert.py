"""Revert commits: prepared and proven before a rollout, applied by ``executor rollback``.

The revert of a rollout restores, at every path the proposal touched, what
was there before (its blob, or nothing). It is prepared on top of the rollout
commit and proven before the base moves: its tree must equal, exactly, the
base's tree before the rollout. If the base has moved on by the time of the
rollback, the revert is built again on the new tip, provided no later commit
changed a touched path (that would be lost), and proven again: it changes
exactly the touched paths, each back to its pre-image.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from executor.errors import ExecutorError, ExitCode, RefusedError
from executor.gitrepo import BLOB, EXECUTABLE, Change, TargetRepo


class RollbackFailed(ExecutorError):
    """The rollback cannot be applied as proven: exit 1, nothing changed."""

    exit_code = ExitCode.GATE_FAILED


@dataclass(frozen=True)
class PreparedRevert:
    commit: str
    files: dict[str, dict[str, Any]]  # path -> before/after blob and mode (None: absent)
    proof: dict[str, Any]


def _message(proposal_id: str, rollout: str) -> str:
    return f"Revert proposal {proposal_id}\n\nThis reverts the rollout {rollout}.\n\nProposal-Id: {proposal_id}\n"


def _pre_images(repo: TargetRepo, before: str, paths: list[str]) -> tuple[Change, dict[str, str | None]]:
    files: dict[str, bytes | None] = {}
    modes: dict[str, int] = {}
    blobs: dict[str, str | None] = {}
    for path in paths:
        entry = repo.entry(before, path)
        if entry is None:
            files[path], blobs[path] = None, None
            continue
        if entry.mode not in (BLOB, EXECUTABLE):
            raise RefusedError(
                f"{path} is not a regular file at {before[:12]}; it cannot be restored by a revert"
            )
        files[path] = repo.read(before, path)
        modes[path] = entry.mode
        blobs[path] = entry.sha
    return Change(files, modes), blobs


def prepare_revert(
    repo: TargetRepo, proposal_id: str, before: str, rollout: str, paths: list[str]
) -> PreparedRevert:
    """The revert of ``rollout`` (made on ``before``), proven to give ``before``'s tree back exactly."""
    change, before_blobs = _pre_images(repo, before, paths)
    commit = repo.write_commit([rollout], rollout, change, _message(proposal_id, rollout))
    want, have = repo.commit(before).tree.hexsha, repo.commit(commit).tree.hexsha
    if want != have:
        raise RollbackFailed(
            f"the prepared revert of proposal {proposal_id} does not restore the base tree "
            f"({have[:12]} instead of {want[:12]}); nothing was rolled out"
        )
    files: dict[str, dict[str, Any]] = {}
    for path in paths:
        after = repo.entry(rollout, path)
        files[path] = {
            "before": before_blobs[path],
            "before_mode": change.modes.get(path) if before_blobs[path] is not None else None,
            "after": after.sha if after else None,
            "after_mode": after.mode if after else None,
        }
    proof = {
        "tree": "the revert commit's tree equals the base tree before the rollout",
        "base_tree": want,
        "proven_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return PreparedRevert(commit, files, proof)


def holds_pre_images(repo: TargetRepo, commit: str, files: dict[str, dict[str, Any]]) -> bool:
    """Whether every path a rollout touched is at ``commit`` as it was before the rollout (content and mode)."""
    for path, image in files.items():
        entry = repo.entry(commit, path)
        now = (entry.sha, entry.mode) if entry else (None, None)
        want = (image["before"], int(image.get("before_mode") or BLOB)) if image["before"] else (None, None)
        if now != want:
            return False
    return True


def rebuild_revert(
    repo: TargetRepo, proposal_id: str, tip: str, rollout: str, files: dict[str, dict[str, Any]]
) -> str:
    """A revert on ``tip`` (the base moved on since the rollout), proven; refused if a touched path drifted.

    Drift is any change of content or mode at a touched path since the
    rollout: reverting it would silently undo later work.
    """
    drifted = []
    for path, image in sorted(files.items()):
        entry = repo.entry(tip, path)
        now = (entry.sha, entry.mode) if entry else (None, None)
        if now != (image["after"], image.get("after_mode", BLOB if image["after"] else None)):
            drifted.append(path)
    if drifted:
        raise RollbackFailed(
            f"the base changed {', '.join(drifted)} after proposal {proposal_id} was rolled out; "
            "a revert would lose those changes, so nothing was changed",
            hint="revert by hand, or roll back the later changes first",
        )
    contents: dict[str, bytes | None] = {}
    modes: dict[str, int] = {}
    for path, image in files.items():
        before = image["before"]
        contents[path] = None if before is None else bytes(repo.repo.odb.stream(bytes.fromhex(before)).read())
        if before is not None:
            modes[path] = int(image.get("before_mode") or BLOB)
    commit = repo.write_commit([tip], tip, Change(contents, modes), _message(proposal_id, rollout))
    changed = repo.changed_paths(tip, commit)
    wrong = [path for path, image in files.items() if not holds_pre_images(repo, commit, {path: image})]
    if not changed <= set(files) or wrong:
        raise RollbackFailed(
            f"the revert rebuilt on {tip[:12]} does not restore exactly the paths proposal {proposal_id} "
            f"touched (changed: {sorted(changed)}; not restored: {wrong}); nothing was changed"
        )
    return commit
