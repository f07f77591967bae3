"""Reading reports from paths and storing them; per-report outcomes, never all-or-nothing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from executor.config import Settings
from executor.errors import RefusedError, ReportError
from executor.models import Proposal
from executor.report import is_malformed, parse_report
from executor.store.proposals import IngestResult, ProposalStore
from executor.terminal import storable

REPORT_SUFFIXES = frozenset({".md", ".txt", ".json"})


@dataclass(frozen=True)
class ReportOutcome:
    path: Path
    proposal: Proposal | None = None
    result: IngestResult | None = None
    error: str | None = None

    @property
    def malformed(self) -> bool:
        return self.error is not None or (self.proposal is not None and is_malformed(self.proposal))


def find_reports(paths: Iterable[Path]) -> Iterator[tuple[Path, str | None]]:
    """Report files under ``paths`` in a stable order, or the reason a path is unusable.

    Files named explicitly are taken whatever their suffix; inside directories,
    only ``.md``, ``.txt`` and ``.json`` files are, hidden ones skipped.
    """
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in REPORT_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                yield path, f"{path}: no .md, .txt or .json reports in this directory"
            for report in found:
                yield report, None
        elif path.is_file():
            yield path, None
        else:
            yield path, f"{path}: no such file or directory"


def read_report(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(data) > limit:
        raise ReportError(f"{path}: larger than the {limit}-byte report limit (max_report_bytes)")
    return data


def ingest_paths(
    paths: Iterable[Path], store: ProposalStore, settings: Settings, *, actor: str
) -> Iterator[ReportOutcome]:
    """Parse and store each report; a bad one is reported and the rest go on."""
    for path, problem in find_reports(paths):
        if problem is not None:
            yield ReportOutcome(path, error=problem)
            continue
        name = storable(str(path))
        try:
            proposal = parse_report(
                read_report(path, settings.max_report_bytes), name=name, limits=settings.limits
            )
        except ReportError as exc:
            yield ReportOutcome(path, error=str(exc))
            continue
        except Exception as exc:  # a parser bug must not cost the rest of the batch
            yield ReportOutcome(
                path,
                error=f"{name}: internal parser error ({type(exc).__name__}: {str(exc)[:200]}); "
                "this is a bug in proposal-executor, please report it with the report attached",
            )
            continue
        try:
            result = store.ingest(proposal, source=storable(str(path.resolve())), actor=actor)
        except RefusedError as exc:
            yield ReportOutcome(path, error=f"{name}: {exc}")
            continue
        yield ReportOutcome(path, proposal, result)
