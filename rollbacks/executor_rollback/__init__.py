"""Rollback artifacts: revert commits prepared and proven before a rollout, and applying them."""
