"""The built-in JavaScript plugin: host checks here, node and acorn in a real sandbox (docker tests)."""

from __future__ import annotations

import time

import pytest
from executor_javascript import plugin as js
from executor_sandbox.pool import Sandboxes

from executor.config import PluginSettings, Settings
from executor.models import FileChange, Level
from executor.plugin_api import BaseTree, EmptyTree, MappingTree, PluginContext
from executor.plugins import Plugins, load_plugins
from executor.report import parse_report
from executor.validation import ValidationReport, validate
from tests.conftest import seed

docker = pytest.mark.docker

# (path, line, column, severity, code, text the message must contain)
Row = tuple[str, int | None, int | None, str, str, str]


def change(path: str, text: str) -> FileChange:
    lines = text.count("\n") + (not text.endswith("\n"))
    return FileChange(path=path, content=text.encode(), header_line=1, line_start=2, line_end=1 + lines)


def javascript_only(**options: object) -> tuple[Plugins, Settings]:
    settings = Settings(plugins=PluginSettings(allow=["javascript"]), plugin={"javascript": options})
    return load_plugins(settings.plugins, third_party=False), settings


def run(
    files: list[FileChange], base: BaseTree, sandboxes: Sandboxes | None, **options: object
) -> ValidationReport:
    plugins, settings = javascript_only(**options)
    assert plugins.names == ["javascript"], plugins.failures
    return validate(files, base, plugins, settings, sandboxes)


def rows(report: ValidationReport) -> list[Row]:
    return [
        (d.path or "", d.line, d.column, d.severity.value, d.code, d.message)
        for d in sorted(report.diagnostics, key=lambda d: (d.path or "", d.line or 0, d.column or 0))
    ]


def assert_rows(report: ValidationReport, expected: list[Row]) -> None:
    found = rows(report)
    assert [r[:5] for r in found] == [e[:5] for e in expected], found
    for (*_, message), (*_, fragment) in zip(found, expected, strict=True):
        assert fragment in message


# -- on the host ----------------------------------------------------------------------------


def test_languages_and_claims() -> None:
    plugins, _ = javascript_only()
    assert plugins.info()[0].languages == ("javascript",)
    files = [change(p, "x;\n") for p in ("a.js", "b/c.mjs", "d.CJS", "e.jsx", "f.ts", "package.json")]
    claimed = plugins.call(
        "javascript", "executor_claim_files", files=files, context=PluginContext(EmptyTree())
    )
    assert claimed == [["a.js", "b/c.mjs", "d.CJS"]]


@pytest.mark.parametrize(
    ("text", "placeholder"),
    [
        ("", True),
        (" \n\t\r\n", True),
        ("// to be developed\n/* later\n */\n", True),
        ("#!/usr/bin/env node\n// nothing yet\n", True),
        ("\ufeff// BOM first\n", True),
        ("// a comment, then code\nmodule.exports = {};\n", False),
        ("/* unterminated", False),  # not empty: node --check reports it
        ("/*/ still open", False),
    ],
)
def test_placeholder_files_warn_on_the_host(text: str, placeholder: bool) -> None:
    report = run([change("a.js", text)], EmptyTree(), None)
    assert [d.code for d in report.diagnostics] == (["js.empty"] if placeholder else [])
    assert all(d.severity is Level.WARNING and d.line is None for d in report.diagnostics)


def test_placeholder_check_is_linear_on_hostile_input() -> None:
    started = time.monotonic()
    for text in ("/" * 200_000 + "\nx", "//" * 100_000 + "x", "/* */" * 100_000 + "x"):
        js.executor_static_check([change("a.js", text)], PluginContext(EmptyTree()))
    assert time.monotonic() - started < 1


def test_javascript_positions_become_file_positions() -> None:
    text = "a;\r\nb;\u2028\tc = '\U0001f600' +;\n"
    # JavaScript line 3 starts after U+2028, still on the file's line 2; the emoji is 2 UTF-16 units.
    assert js._location(text, 3, 9) == (2, 12)
    assert js._location(text, 2, None) == (2, None)
    assert js._location(text, None, None) == (None, None)


def test_package_names() -> None:
    builtins = {"fs", "fs/promises", "path"}
    names = {
        s: js._package(s, builtins)
        for s in (
            "fs",
            "fs/promises",
            "node:test",
            "./x",
            "../x",
            "/abs",
            "#internal",
            "data:text/javascript,1",
        )
    }
    assert set(names.values()) == {None}
    assert js._package("lodash/fp", builtins) == "lodash"
    assert js._package("@scope/pkg/sub/path.js", builtins) == "@scope/pkg"


# -- in the sandbox ---------------------------------------------------------------------


@docker
def test_seed_004(sandboxes: Sandboxes) -> None:
    path = seed("004")
    files = [f for f in parse_report(path.read_bytes(), name=path.name).files if f.language == "javascript"]
    started = time.monotonic()
    report = run(files, EmptyTree(), sandboxes)
    print(f"seed 004: {len(files)} files validated in {time.monotonic() - started:.2f} s")
    assert_rows(
        report,
        [
            ("config/database.js", 1, 26, "warning", "js.undeclared-package", "'pg'"),
            ("config/database.js", 2, 9, "warning", "js.undeclared-package", "'dotenv'"),
            ("routes/webhooks.js", 1, 24, "warning", "js.undeclared-package", "'stripe', but the repository"),
            ("tests/metricsTest.js", None, None, "warning", "js.empty", "is empty"),
            ("tests/scenariosTest.js", 1, 57, "warning", "js.undeclared-package", "'@jest/globals'"),
        ],
    )
    assert report.ok
    assert not report.failures


ROOT_MANIFEST = b"""{"name": "app", "dependencies": {"lodash": "^4"},
  "devDependencies": {"@scope/pkg": "1"}}"""


@docker
def test_node_decides_module_kind_and_imports_are_checked(sandboxes: Sandboxes) -> None:
    base = MappingTree(
        {
            "package.json": ROOT_MANIFEST,
            "esm/package.json": b'{"type": "module", "peerDependencies": {"chalk": "5"}}',
            "esm/readme.md": b"not read",
        }
    )
    files = [
        change(
            "esm/ok.js",  # ESM because of esm/package.json; every import is declared or built in
            "import fs from 'node:fs';\nimport { readFile } from 'fs/promises';\n"
            "import get from 'lodash/get.js';\nexport * from '@scope/pkg/sub';\n"
            "export { x } from './x.js';\nconst chalk = await import('chalk');\n"
            "const self = await import('app');\n",
        ),
        change("esm/legacy.cjs", "import fs from 'fs';\n"),  # .cjs: CommonJS whatever "type" says
        change("plain.js", "const path = require('path');\nimport fs from 'fs';\n"),  # no "type": CommonJS
        change(
            "mod.mjs",
            "import x from './x.js';\nexport const pad = await import('left-pad');\n"
            "const again = await import(`left-pad/index.js`);\nconst dyn = await import(name);\n",
        ),
        change("common.cjs", "const p = require('node:path');\nconst e = require('express');\n"),
        change("broken.js", "const e = require('never-scanned');\n\tconst s = '\U0001f600' +;\n"),
    ]
    started = time.monotonic()
    report = run(files, base, sandboxes)
    print(f"{len(files)} files validated in {time.monotonic() - started:.2f} s")
    assert_rows(
        report,
        [
            ("broken.js", 2, 17, "error", "js.syntax", "SyntaxError: Unexpected token ';'"),
            ("common.cjs", 2, 19, "warning", "js.undeclared-package", "'express', which package.json"),
            ("esm/legacy.cjs", 1, 1, "error", "js.syntax", "Cannot use import statement outside a module"),
            ("mod.mjs", 2, 33, "warning", "js.undeclared-package", "npm install left-pad"),
            ("plain.js", 2, 1, "error", "js.syntax", "Cannot use import statement outside a module"),
        ],
    )
    assert [g.name for g in report.gates if not g.ok] == ["sandbox", "rollback"]
    assert not report.failures


@docker
def test_without_type_module_esm_in_js_fails_and_timeouts_are_errors(sandboxes: Sandboxes) -> None:
    files = [change("esm/ok.js", "import fs from 'node:fs';\n"), change("b.cjs", "module.exports = 1;\n")]
    report = run(files, MappingTree({"package.json": b'{"type": "commonjs"}'}), sandboxes)
    assert_rows(report, [("esm/ok.js", 1, 1, "error", "js.syntax", "outside a module")])

    report = run(files, EmptyTree(), sandboxes, timeout=0.001)
    assert_rows(
        report,
        [
            ("b.cjs", None, None, "error", "js.incomplete", "not checked: killed at the 0.001 s timeout"),
            ("esm/ok.js", None, None, "error", "js.incomplete", "not checked: killed at the 0.001 s timeout"),
        ],
    )

    report = run(files, EmptyTree(), sandboxes, timeout="soon")  # the operator's mistake, named
    assert {(d.code, d.severity) for d in report.diagnostics} == {("plugin.crashed", Level.ERROR)}
    assert "timeout must be a positive number" in report.diagnostics[0].message
