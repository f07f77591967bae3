"""The down migration, from what the server recorded, and what makes a proposal irreversible.

Created objects come from the ``ddl_command_end`` log; columns and
constraints added to tables that existed before come from the schema
snapshot difference. Objects that belong to another one (a serial's sequence,
a primary key's index, a view's rewrite rule, an extension's functions) go
with their owner. The rest is dropped in reverse dependency order, read from
``pg_depend``, without CASCADE or IF EXISTS, so the proof catches any mistake.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from executor_sql.database import AppliedFile, Database, Snapshot

Node = tuple[str, int, int]  # (catalog, objid, objsubid)

#: DROP statements by pg_identify_object_as_address() type; names come quoted.
_PLAIN_DROPS = {
    "table": "TABLE",
    "view": "VIEW",
    "materialized view": "MATERIALIZED VIEW",
    "sequence": "SEQUENCE",
    "index": "INDEX",
    "foreign table": "FOREIGN TABLE",
    "schema": "SCHEMA",
    "extension": "EXTENSION",
    "collation": "COLLATION",
    "conversion": "CONVERSION",
    "statistics object": "STATISTICS",
    "text search configuration": "TEXT SEARCH CONFIGURATION",
    "text search dictionary": "TEXT SEARCH DICTIONARY",
}
_ROUTINES = {"function": "FUNCTION", "procedure": "PROCEDURE", "aggregate": "AGGREGATE"}
_ON_TABLE = {"trigger": "TRIGGER", "policy": "POLICY", "rule": "RULE"}
_DESTRUCTIVE_DML = ("UPDATE", "DELETE", "TRUNCATE", "MERGE")

_EVENTS = """
SELECT e.seq, e.event, e.command_tag, e.object_type, e.object_identity, e.classid::regclass::text AS catalog,
       e.objid, a.type, ARRAY(SELECT quote_ident(x) FROM unnest(a.object_names) x) AS quoted_names,
       a.object_names, a.object_args, e.original,
       EXISTS (SELECT 1 FROM executor_audit.events b
               WHERE b.seq <= {start} AND b.classid = e.classid AND b.objid = e.objid) AS preexisting
FROM executor_audit.events e
LEFT JOIN LATERAL pg_identify_object_as_address(e.classid, e.objid, 0) a ON e.event = 'ddl'
WHERE e.seq > {start} AND e.seq <= {end} AND e.classid IS NOT NULL
"""
_DEPENDS = """
SELECT classid::regclass::text AS catalog, objid, objsubid, refclassid::regclass::text AS refcatalog,
       refobjid, refobjsubid, deptype
FROM pg_depend WHERE objid >= 16384 AND deptype IN ('n', 'a', 'i', 'e')
"""
# Both in one round trip, as JSON arrays of rows (row_to_json keeps the column order).
_PLAN_INPUTS = f"""
SELECT (SELECT coalesce(json_agg(row_to_json(x) ORDER BY x.seq), '[]') FROM ({_EVENTS}) x),
       (SELECT coalesce(json_agg(row_to_json(y)), '[]') FROM ({_DEPENDS}) y)
"""


@dataclass
class Plan:
    statements: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def _node(address: str | None) -> Node | None:
    if not address:
        return None
    catalog, objid, objsubid = address.rsplit(":", 2)
    return (catalog, int(objid), int(objsubid))


def plan(db: Database, applied: list[AppliedFile], base: Snapshot, up: Snapshot) -> Plan:
    """The down migration from ``base`` (before the proposal's files) to ``up`` (after them), or why there is none."""
    result = Plan()
    start, end = base.mark, up.mark
    [[event_rows, depend_rows]] = db.admin(
        _PLAN_INPUTS.replace("{start}", str(start)).replace("{end}", str(end))
    )
    events = [list(row.values()) for row in event_rows]
    depends = [list(row.values()) for row in depend_rows]
    created: dict[Node, tuple[int, str]] = {}  # node -> (seq, DROP statement or '' if none is known)
    dropped_later: set[Node] = set()
    for (
        seq,
        event,
        _tag,
        object_type,
        identity,
        catalog,
        objid,
        kind,
        quoted,
        names,
        args,
        original,
        pre,
    ) in events:
        node = (catalog, int(objid), 0)
        if event == "drop":
            if node in created:
                dropped_later.add(node)
            elif original:
                result.reasons.append(f"{_where(applied, seq)}drops {object_type} {identity}")
        elif _tag_creates(_tag) and not pre and node not in created and kind is not None:
            created[node] = (seq, _drop_statement(kind, quoted, names, args))
    for node in dropped_later:
        created.pop(node, None)
    result.reasons += _dml_reasons(applied, {row[4] for row in _created_tables(events)})
    # Columns and constraints added to tables that existed before.
    added: dict[Node, tuple[int, str]] = {}
    base_relations = {name for (kind, _parent, name) in base.rows if kind == "relation"}
    altered: dict[str, list[int]] = defaultdict(list)  # table -> seqs of ALTER TABLE on it, for tie-breaks
    for row in events:
        if row[1] == "ddl" and row[2] == "ALTER TABLE":
            altered[row[4]].append(int(row[0]))
    for key, address in up.addresses.items():
        kind, parent, name = key
        part = _node(address)
        if key in base.rows or part is None or parent not in base_relations:
            continue
        seqs = altered.get(parent) or [end]
        if kind == "column":
            added[part] = (seqs[0], f"ALTER TABLE {parent} DROP COLUMN {name}")
        elif kind == "constraint":
            added[part] = (seqs[-1], f"ALTER TABLE {parent} DROP CONSTRAINT {name}")
    items = {**created, **added}
    owner = Owners(depends, items)
    explicit = {node: value for node, value in items.items() if owner(node) == node}
    result.reasons += _unexplained(base, up, owner)
    for node, (_seq, statement) in explicit.items():
        if not statement:
            result.reasons.append(f"no down step is known for {node[0]} object {node[1]}")
    if result.reasons:
        return result
    for node in _drop_order(explicit, owner):
        result.statements.append(explicit[node][1])
    result.steps = list(result.statements)
    return result


def _tag_creates(tag: str) -> bool:
    return tag.startswith("CREATE ") or tag == "SELECT INTO"


def _created_tables(events: list[list[Any]]) -> list[list[Any]]:
    return [
        row
        for row in events
        if row[1] == "ddl" and row[3] == "table" and _tag_creates(row[2]) and not row[12]
    ]


def _where(applied: list[AppliedFile], seq: int) -> str:
    for run in applied:
        found = run.locate(seq)
        if found is not None:
            return f"{run.change.path}:{found[0]}: "
    return ""


def _drop_statement(kind: str, quoted: list[str], names: list[str], args: list[str]) -> str:
    dotted = ".".join(quoted)
    if kind in _PLAIN_DROPS:
        return f"DROP {_PLAIN_DROPS[kind]} {dotted}"
    if kind in ("type", "domain"):
        return f"DROP {kind.upper()} {names[0]}"  # already formatted by the server
    if kind in _ROUTINES:
        return f"DROP {_ROUTINES[kind]} {dotted}({', '.join(args)})"
    if kind in _ON_TABLE and len(quoted) == 3:
        return f"DROP {_ON_TABLE[kind]} {quoted[2]} ON {quoted[0]}.{quoted[1]}"
    if kind == "table constraint" and len(quoted) == 3:
        return f"ALTER TABLE {quoted[0]}.{quoted[1]} DROP CONSTRAINT {quoted[2]}"
    return ""


def _dml_reasons(applied: list[AppliedFile], created_tables: set[str]) -> list[str]:
    """Statements that change rows the down migration cannot restore."""
    reasons = []
    for run in applied:
        for statement, status in zip(run.statements, run.statuses, strict=True):
            tag = status.split(" ", 1)[0]
            line = run.text.count("\n", 0, statement.start) + 1
            if tag in _DESTRUCTIVE_DML:
                reasons.append(f"{run.change.path}:{line}: {tag} changes existing rows")
            elif tag in ("INSERT", "COPY"):
                target = _target_table(statement.tokens)
                if target is None or target not in created_tables:
                    reasons.append(
                        f"{run.change.path}:{line}: {tag} adds rows to {target or 'a table'} that existed before"
                    )
    return reasons


def _target_table(tokens: Any) -> str | None:
    """``INSERT INTO x`` / ``COPY x``: the table, qualified with public when it is not."""
    words = [t.word for t in tokens[:3]]
    index = 2 if words[:2] == ["INSERT", "INTO"] else 1 if words[0] == "COPY" else None
    if index is None or index >= len(tokens):
        return None
    parts, i = [], index
    while i < len(tokens) and tokens[i].kind in ("ident", "qident"):
        text = tokens[i].text
        parts.append(text if tokens[i].kind == "qident" else text.lower())
        if i + 1 < len(tokens) and tokens[i + 1].text == ".":
            i += 2
            continue
        break
    if not parts:
        return None
    return ".".join(parts if len(parts) > 1 else ["public", *parts])


class Owners:
    """Which item takes a catalog object with it when dropped, from pg_depend's a/i/e edges."""

    def __init__(self, depends: list[list[Any]], items: dict[Node, Any]) -> None:
        self.depends = depends
        self.items = items
        self.owned_by: dict[Node, Node] = {}
        for catalog, objid, objsubid, refcatalog, refobjid, refobjsubid, deptype in depends:
            if deptype in ("a", "i", "e"):
                node = (catalog, int(objid), int(objsubid))
                self.owned_by.setdefault(node, (refcatalog, int(refobjid), int(refobjsubid)))

    def item(self, node: Node) -> Node | None:
        if node in self.items:
            return node
        whole = (node[0], node[1], 0)
        return whole if node[2] and whole in self.items else None

    def __call__(self, node: Node) -> Node | None:
        """The outermost item on ``node``'s ownership chain; None if it belongs to no item."""
        found: Node | None = None
        seen: set[Node] = set()
        current: Node | None = node
        while current is not None and current not in seen:
            seen.add(current)
            found = self.item(current) or found
            current = self.owned_by.get(current) or (
                self.owned_by.get((current[0], current[1], 0)) if current[2] else None
            )
        return found


def _unexplained(base: Snapshot, up: Snapshot, owner: Owners) -> list[str]:
    """Schema changes that no down step reverses: existing objects altered or removed, others created."""
    reasons = []
    for key, definition in up.rows.items():
        label = " ".join(filter(None, (key[0], key[1], key[2])))
        if key in base.rows:
            if base.rows[key] != definition:
                reasons.append(f"changes existing {label}")
            continue
        node = _node(up.addresses.get(key))
        if node is None or owner(node) is None:
            reasons.append(f"creates {label}, which no down step removes")
    for key in base.rows:
        if key not in up.rows:
            reasons.append(f"removes existing {' '.join(filter(None, key))}")
    return reasons


def _drop_order(explicit: dict[Node, tuple[int, str]], owner: Owners) -> list[Node]:
    """Dependents before what they depend on; among independent ones, newest first."""
    needs: dict[Node, set[Node]] = defaultdict(set)  # node -> nodes that must be dropped before it
    for catalog, objid, objsubid, refcatalog, refobjid, refobjsubid, deptype in owner.depends:
        if deptype != "n":
            continue
        source = owner((catalog, int(objid), int(objsubid)))
        target = owner((refcatalog, int(refobjid), int(refobjsubid)))
        if source in explicit and target in explicit and source != target:
            needs[target].add(source)
    order: list[Node] = []
    remaining = set(explicit)
    while remaining:
        ready = [n for n in remaining if not (needs[n] & remaining)] or list(remaining)
        chosen = max(ready, key=lambda n: explicit[n])  # newest first; the text breaks ties
        order.append(chosen)
        remaining.discard(chosen)
    return order
