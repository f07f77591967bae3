"""The example third-party plugin (tests/example_plugin), installed and found through its entry point.

pip installs it offline into a temporary directory, once per session. Every
check then runs in a subprocess with that directory on PYTHONPATH, so this
process never sees the plugin: tests never load installed third-party plugins.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from executor.diagnostics import Diagnostic
from executor.models import Level
from tests.conftest import ROOT, run_executor

EXAMPLE = ROOT / "tests" / "example_plugin"
DOCS = ROOT / "docs" / "plugins.md"
HOOKS = ["executor_claim_files", "executor_languages", "executor_static_check"]

REPORT = b"""\
# FSAR Proposal Report
- id: fsar_7d0c3b52-54a4-4c1e-9a57-0b7d8e0f2a11
- timestamp: 2026-01-02T20:13:28.646Z
- severity: 3
- block_execution: false
- proposal:

idea_implementation: Add the service settings.

===FILE:config/app.toml ===
[server]
host = "0.0.0.0"
port = = 8080
```

===FILE:config/ok.toml ===
[ok]
value = 1
```
"""

# Parses a report from stdin and runs the static gate with the plugins the
# operator's config allows; prints the ValidationReport, or the refusal.
VALIDATE = """
import json, sys
from executor.config import load_settings
from executor.plugin_api import EmptyTree
from executor.plugins import load_plugins
from executor.report import parse_report
from executor.validation import UnvalidatedFilesError, validate

proposal = parse_report(sys.stdin.buffer.read())
settings = load_settings()
try:
    report = validate(proposal.files, EmptyTree(), load_plugins(settings.plugins), settings, sandboxes=None)
except UnvalidatedFilesError as exc:
    print(json.dumps({"refused": exc.message}))
else:
    print(report.model_dump_json())
"""


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed example plugin (its package and dist-info, entry points included)."""
    root = tmp_path_factory.mktemp("example_plugin")
    # Built from a copy: pip builds in the source tree and would leave build/ and *.egg-info there.
    source = root / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def listing(site: Path, **env: str) -> dict[str, list[dict[str, Any]]]:
    result = run_executor("plugins", "--json", env={"PYTHONPATH": str(site), **env})
    assert result.returncode == 0, result.stderr
    found: dict[str, list[dict[str, Any]]] = json.loads(result.stdout)
    return found


def validated(site: Path, **env: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", VALIDATE],
        input=REPORT,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(site), **env},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    outcome: dict[str, Any] = json.loads(result.stdout)
    return outcome


def config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return {"EXECUTOR_CONFIG": str(path)}


def test_listed_with_its_version_and_hooks(site: Path) -> None:
    found = listing(site)
    assert [p for p in found["plugins"] if p["name"] == "toml"] == [
        {
            "name": "toml",
            "version": "0.1.0",
            "distribution": "executor-toml-example",
            "builtin": False,
            "hooks": HOOKS,
            "languages": ["toml"],
        }
    ]
    assert [f for f in found["failures"] if f["plugin"] == "toml"] == []


def test_listed_in_the_table(site: Path) -> None:
    result = run_executor("plugins", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    row = r"^toml\s+0\.1\.0\s+executor-toml-example\s+toml\s+claim_files, languages, static_check\s*$"
    assert re.search(row, result.stdout, re.MULTILINE), result.stdout


def test_not_loaded_without_the_install() -> None:
    """The fixture's install is the only way this plugin gets in: this process does not see it."""
    result = run_executor("plugins", "--json")
    assert result.returncode == 0, result.stderr
    assert "toml" not in [p["name"] for p in json.loads(result.stdout)["plugins"]]


def test_static_validation_locates_the_error(site: Path) -> None:
    report = validated(site)
    assert report["claims"] == {"config/app.toml": ["toml"], "config/ok.toml": ["toml"]}
    assert report["unvalidated"] == []
    assert [Diagnostic.model_validate(d) for d in report["diagnostics"]] == [
        Diagnostic(
            plugin="toml",
            path="config/app.toml",
            line=3,
            column=8,
            severity=Level.ERROR,
            code="toml.syntax",
            message="invalid TOML: Invalid value",
            report_line=13,
        )
    ]
    assert [(g["name"], g["ok"]) for g in report["gates"]] == [("static", False)]
    assert [f for f in report["failures"] if f["plugin"] == "toml"] == []


def test_denied_by_the_operator(site: Path, tmp_path: Path) -> None:
    env = config(tmp_path, '[plugins]\ndeny = ["toml"]\n')
    found = listing(site, **env)
    assert "toml" not in [p["name"] for p in found["plugins"]]
    assert "toml" not in [f["plugin"] for f in found["failures"]]
    refused = validated(site, **env)["refused"]
    assert isinstance(refused, str)
    assert refused.startswith("no plugin validates config/app.toml (toml), config/ok.toml (toml)")


def test_allow_loads_only_the_named_plugins(site: Path, tmp_path: Path) -> None:
    found = listing(site, **config(tmp_path, '[plugins]\nallow = ["toml"]\n'))
    assert [p["name"] for p in found["plugins"]] == ["toml"]
    assert found["failures"] == []  # the built-in plugins were not even imported


def code_blocks(markdown: str) -> dict[str, str]:
    """The docs' code blocks that name their file: ```python title="tests/test_toml.py"."""
    return dict(re.findall(r'^```\w+ title="([^"]+)"\n(.*?)^```$', markdown, re.MULTILINE | re.DOTALL))


def test_docs_test_suite_passes_against_the_installed_plugin(site: Path, tmp_path: Path) -> None:
    """docs/plugins.md's tests for the example plugin, run as its author runs them."""
    blocks = code_blocks(DOCS.read_text(encoding="utf-8"))
    assert sorted(blocks) == ["tests/conftest.py", "tests/test_toml.py"]
    project = tmp_path / "author"
    for name, text in blocks.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_docs_show_the_example_as_it_is() -> None:
    """The hook implementations and the entry point quoted in the docs are the example's own."""
    docs = DOCS.read_text(encoding="utf-8")
    source = (EXAMPLE / "executor_toml_example" / "__init__.py").read_text(encoding="utf-8")
    pyproject = (EXAMPLE / "pyproject.toml").read_text(encoding="utf-8")
    quoted = re.search(r"^```python\n(from executor import hookimpl\n.*?)^```$", docs, re.M | re.S)
    assert quoted is not None
    for part in quoted[1].split("\n\n\n"):
        assert part.strip() in source
    entry_point = '[project.entry-points."executor.plugins"]\ntoml = "executor_toml_example"\n'
    assert entry_point in pyproject
    assert entry_point in docs
