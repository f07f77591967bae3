'use strict';
// Runs inside the sandbox as the runner: `node scan.js FILE...`, FILE relative to the cwd.
// Nothing here evaluates a file: `node --check` only compiles it (so the module kind is
// node's own decision: .mjs, .cjs, the nearest package.json "type"), acorn only parses it.
// Prints JSON lines: {"builtins": [...]}, then one {"file": ...} per file as it is done
// (a killed run still tells which files were finished), then {"done": true}.

const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { builtinModules } = require('module');
const acorn = require('/usr/share/nodejs/acorn'); // Debian's node-acorn: never a proposal's copy

function emit(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
}

// node --check's verdict: line and UTF-16 column (0-based) come from its "FILE:LINE" header
// and the caret line below the echoed source line.
function check(file) {
  const run = spawnSync(process.execPath, ['--check', file], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (run.status === 0) return { ok: true };
  if (run.error) return { ok: false, message: `node --check could not run: ${run.error.message}` };
  const lines = (run.stderr || '').split('\n');
  const header = `${path.resolve(file)}:`;
  const at = lines.findIndex((l) => l.startsWith(header) && /^\d+$/.test(l.slice(header.length)));
  const caret = at >= 0 ? (lines[at + 2] || '').indexOf('^') : -1;
  const errorLine = /^\w*Error\b( \[\w+\])?: /;
  const message = lines.slice(at >= 0 ? at + 3 : 0).find((l) => errorLine.test(l));
  return {
    ok: false,
    line: at >= 0 ? Number(lines[at].slice(header.length)) : null,
    column: caret >= 0 ? caret : null,
    message: message || `node --check exited ${run.status} (signal ${run.signal})`,
  };
}

function parse(text) {
  const options = {
    ecmaVersion: 'latest',
    locations: true,
    allowHashBang: true,
    allowReturnOutsideFunction: true,
    allowAwaitOutsideFunction: true,
  };
  try {
    return acorn.parse(text, { ...options, sourceType: 'module' });
  } catch (moduleError) {
    return acorn.parse(text, { ...options, sourceType: 'script' }); // CommonJS-only syntax
  }
}

function literal(node) {
  if (node && node.type === 'Literal' && typeof node.value === 'string') return node.value;
  if (node && node.type === 'TemplateLiteral' && node.expressions.length === 0) {
    return node.quasis[0].value.cooked;
  }
  return null;
}

// The specifier node of an import-like node: import/export ... from, import(), require().
function source(node) {
  switch (node.type) {
    case 'ImportDeclaration':
    case 'ExportNamedDeclaration':
    case 'ExportAllDeclaration':
    case 'ImportExpression':
      return node.source;
    case 'CallExpression':
      return node.callee.type === 'Identifier' && node.callee.name === 'require' ? node.arguments[0] : null;
    default:
      return null;
  }
}

// Each literal specifier once, where it first occurs (iterative walk: no stack overflow).
function imports(ast) {
  const found = [];
  const stack = [ast];
  while (stack.length) {
    const node = stack.pop();
    const specNode = source(node);
    const specifier = literal(specNode);
    if (specifier !== null) found.push({ specifier, start: specNode.start, ...specNode.loc.start });
    for (const value of Object.values(node)) {
      for (const child of Array.isArray(value) ? value : [value]) {
        if (child && typeof child.type === 'string') stack.push(child);
      }
    }
  }
  const seen = new Set();
  return found
    .sort((a, b) => a.start - b.start)
    .filter(({ specifier }) => !seen.has(specifier) && seen.add(specifier))
    .map(({ specifier, line, column }) => ({ specifier, line, column }));
}

emit({ builtins: builtinModules });
for (const file of process.argv.slice(2)) {
  const result = { file, check: check(file) };
  if (result.check.ok) {
    try {
      result.imports = imports(parse(fs.readFileSync(file, 'utf8')));
    } catch (error) {
      result.scan_error = String(error && error.message);
    }
  }
  emit(result);
}
emit({ done: true });
