"""Run outcomes as CI systems read them natively: JUnit XML and SARIF 2.1.0.

JUnit: one test suite per proposal, a test case per gate (failed gates carry
their message) and one per file (its error diagnostics as the failure, its
warnings as output). SARIF: one result per diagnostic, located at the file in
the repository, so code-scanning views annotate the lines.
"""

from __future__ import annotations

import json
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from executor import __version__
from executor.diagnostics import Diagnostic
from executor.run import RunOutcome

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _line(d: Diagnostic) -> str:
    return f"{d.location()}: {d.severity.value} {d.code}: {d.message}" + (
        f" [{d.plugin}]" if d.plugin else ""
    )


def junit(outcomes: Sequence[RunOutcome], refused: Sequence[dict[str, object]] = ()) -> bytes:
    """A suite per proposal; a refused run is a suite whose one case failed (the refusal)."""
    suites = ET.Element("testsuites", name="proposal-executor")
    for refusal in refused:
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=str(refusal["proposal_id"]),
            tests="1",
            failures="1",
            errors="0",
            skipped="0",
            time="0",
        )
        case = ET.SubElement(
            suite, "testcase", classname=f"{refusal['proposal_id']}.run", name="run", time="0"
        )
        ET.SubElement(case, "failure", message=str(refusal["message"]), type=str(refusal["status"]))
    for outcome in outcomes:
        files: dict[str, list[Diagnostic]] = {}
        for d in outcome.diagnostics:
            files.setdefault(d.path or "(proposal)", []).append(d)
        cases: list[ET.Element] = []
        for gate in outcome.gates:
            case = ET.Element(
                "testcase",
                classname=f"{outcome.proposal_id}.gates",
                name=gate.name,
                time=f"{gate.seconds:.3f}",
            )
            if gate.skipped:
                ET.SubElement(case, "skipped", message="not reached")
            elif not gate.ok:
                ET.SubElement(case, "failure", message=gate.message or "failed", type="gate")
            cases.append(case)
        for path, found in files.items():
            case = ET.Element("testcase", classname=f"{outcome.proposal_id}.files", name=path, time="0")
            errors = [d for d in found if d.is_error]
            if errors:
                failure = ET.SubElement(case, "failure", message=errors[0].message, type=errors[0].code)
                failure.text = "\n".join(_line(d) for d in errors)
            warnings = [d for d in found if not d.is_error]
            if warnings:
                ET.SubElement(case, "system-out").text = "\n".join(_line(d) for d in warnings)
            cases.append(case)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=outcome.proposal_id,
            tests=str(len(cases)),
            failures=str(sum(1 for c in cases if c.find("failure") is not None)),
            skipped=str(sum(1 for c in cases if c.find("skipped") is not None)),
            errors="0",
            time=f"{outcome.seconds:.3f}",
        )
        properties = ET.SubElement(suite, "properties")
        for name, value in (
            ("status", outcome.status),
            ("branch", outcome.branch),
            ("commit", outcome.commit),
            ("rollout_commit", outcome.rollout_commit),
            ("rollback_ref", outcome.rollback.ref if outcome.rollback else None),
        ):
            if value:
                ET.SubElement(properties, "property", name=name, value=value)
        suite.extend(cases)
    ET.indent(suites)
    return bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True))


def sarif(outcomes: Sequence[RunOutcome], refused: Sequence[dict[str, object]] = ()) -> bytes:
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for outcome in outcomes:
        for d in outcome.diagnostics:
            rules.setdefault(d.code, {"id": d.code, "shortDescription": {"text": d.code}})
            result: dict[str, Any] = {
                "ruleId": d.code,
                "level": "error" if d.is_error else "warning",
                "message": {"text": d.message},
                "properties": {
                    "proposal": outcome.proposal_id,
                    "plugin": d.plugin,
                    "reportLine": d.report_line,
                },
            }
            if d.path:
                region = {"startLine": d.line} if d.line else {}
                if d.line and d.column:
                    region["startColumn"] = d.column
                location: dict[str, Any] = {"artifactLocation": {"uri": d.path, "uriBaseId": "REPO"}}
                if region:
                    location["region"] = region
                result["locations"] = [{"physicalLocation": location}]
            results.append(result)
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "proposal-executor",
                        "version": __version__,
                        "rules": sorted(rules.values(), key=lambda r: str(r["id"])),
                    }
                },
                "originalUriBaseIds": {"REPO": {"description": {"text": "the target repository's root"}}},
                "results": results,
                "invocations": [
                    {
                        "executionSuccessful": not refused
                        and all(o.status != "gate_failed" for o in outcomes),
                        "toolExecutionNotifications": [
                            {"level": "error", "message": {"text": f"{r['proposal_id']}: {r['message']}"}}
                            for r in refused
                        ],
                    }
                ],
            }
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=True).encode("ascii")


def write_atomically(path: Path, data: bytes) -> None:
    """Readers (CI) see the old file or the whole new one, never a part."""
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, delete=False, prefix=f".{path.name}.") as handle:
        handle.write(data)
    os.replace(handle.name, path)
