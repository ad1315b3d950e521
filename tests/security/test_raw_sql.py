"""No SQL text is built from input: an audit of every raw SQL call site in the product's code.

Each ``execute``/``executemany``/``copy_expert``/``.raw``/``.extra``/``RawSQL`` call
must pass SQL that is a constant (a literal, or a name bound only to literals,
possibly combined with ``+`` or a conditional), and pass its values as
parameters whenever the text has placeholders. A call whose SQL text is built at
run time (f-string, ``.format``, ``%``, concatenation with a variable) must be
listed in ``REVIEWED`` with the reason its interpolated parts cannot come from a
request. A new dynamic site fails this test until someone reviews it; a stale
entry fails it too, so the list stays the truth.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["experiments", "recsite"]
SQL_METHODS = {"execute", "executemany", "copy_expert", "raw", "extra"}
SQL_CALLABLES = {"RawSQL"}

# (file, function) -> why the interpolated parts are not input.
REVIEWED: dict[tuple[str, str], str] = {
    ("experiments/services/checkpoints.py", "checkpoint_copy_insert"):
        "interpolates ModelCheckpoint._meta.db_table only; values are parameters",
    ("experiments/services/checkpoints.py", "checkpoint_retention_apply"):
        "interpolates the model's table name and a fixed optional 'WHERE arm_id = %s' clause; values are parameters",
    ("experiments/services/training_data.py", "safe_horizon"):
        "interpolates sequence names returned by pg_get_serial_sequence() for our own tables",
    ("experiments/services/training_data.py", "step_rows_read"):
        "interpolates the models' _meta.db_table names and the fixed IMPRESSION_COLUMNS tuple; values are parameters",
    ("experiments/services/training_data.py", "entities_read"):
        "interpolates the models' _meta.db_table names; values are parameters",
    ("experiments/services/shadow_training.py", "shadow_rows_read"):
        "module constants built from the fixed IMPRESSION_COLUMNS tuple and the fixed weight expression; values are "
        "parameters",
    ("experiments/offline/services.py", "offline_evaluate"):
        "interpolates fixed optional clauses ('AND i.arm_id <> %s', 'AND i.arm_id = ANY(%s)'); values are parameters",
    ("experiments/services/bulk.py", "events_import"):
        "COPY column list: every name checked by _columns() against the fixed REQUIRED/OPTIONAL sets",
    ("experiments/services/bulk_events.py", "business_events_import"):
        "COPY column list: every name checked by columns_check() against the fixed REQUIRED/OPTIONAL sets",
    ("experiments/services/shoppers.py", "_user_lookup"):
        "_USER_SQL joins module constants (sessions.SELECT_COLUMNS); values are parameters",
    ("experiments/services/shoppers.py", "impressions_write"):
        "the async-commit prefix + the caller's module constant (events._IMPRESSIONS_SQL, interleaved._INTERLEAVED_SQL, "
        "both joining sessions.IMPRESSIONS_CTE); values are parameters",
    ("experiments/services/clicks.py", "click_record"):
        "_CLICK_SQL joins module constants (sessions.CLICK_CTE); values are parameters",
    ("experiments/services/partitions.py", "impression_partition_drop"):
        "interpolates a partition name built from a datetime.date (experiments_impression_YYYYMMDD), never input",
    ("experiments/selectors/segments.py", "experiment_segments"):
        "interpolates one of two fixed segment expressions (the attribute name and the start time are parameters)",
    ("recsite/demo.py", "ensure_database"):
        "CREATE DATABASE with the name from the operator's own DATABASE_URL (make demo), never from a request",
}


@dataclass(frozen=True)
class Site:
    path: str
    function: str
    line: int
    dynamic: bool
    has_params: bool
    placeholders: bool


def _constant_strings(tree: ast.AST) -> dict[str, list[ast.expr]]:
    """name -> every expression assigned to it (module level and function level alike)."""
    bound: dict[str, list[ast.expr]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    bound.setdefault(target.id, []).append(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            bound.setdefault(node.target.id, []).append(node.value)
    return bound


def _static_text(expr: ast.expr, bound: dict[str, list[ast.expr]], depth: int = 0) -> str | None:
    """The SQL text if it is fixed at import time (all branches joined), else None."""
    if depth > 10:
        return None
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, ast.Name) and expr.id in bound:
        texts = [_static_text(v, bound, depth + 1) for v in bound[expr.id]]
        return None if any(t is None for t in texts) else "\n".join(texts)
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        left, right = _static_text(expr.left, bound, depth + 1), _static_text(expr.right, bound, depth + 1)
        return None if left is None or right is None else left + right
    if isinstance(expr, ast.IfExp):
        a, b = _static_text(expr.body, bound, depth + 1), _static_text(expr.orelse, bound, depth + 1)
        return None if a is None or b is None else a + "\n" + b
    return None


def _sql_call(node: ast.Call) -> bool:
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr in SQL_METHODS:
        return True
    return isinstance(func, ast.Name) and func.id in SQL_CALLABLES


def _sites() -> list[Site]:
    sites: list[Site] = []
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            bound = _constant_strings(tree)
            for func in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
                for node in ast.walk(func):
                    if not isinstance(node, ast.Call) or not _sql_call(node):
                        continue
                    sql = node.args[0] if node.args else next(
                        (k.value for k in node.keywords if k.arg in ("sql", "select", "where")), None)
                    if sql is None:
                        continue
                    text = _static_text(sql, bound)
                    has_params = len(node.args) > 1 or any(k.arg in ("params", "select_params") for k in node.keywords)
                    sites.append(Site(
                        path=str(path.relative_to(ROOT)), function=func.name, line=node.lineno,
                        dynamic=text is None, has_params=has_params,
                        placeholders=text is not None and ("%s" in text or "%(" in text),
                    ))
    # A call inside a nested function is seen from both functions: keep the innermost.
    innermost: dict[tuple[str, int], Site] = {}
    for site in sites:
        innermost[(site.path, site.line)] = site
    return list(innermost.values())


def test_the_audit_finds_the_known_call_sites():
    sites = _sites()

    assert len(sites) >= 30
    assert any(s.path == "experiments/services/events.py" and not s.dynamic for s in sites)


def test_every_sql_text_built_at_run_time_is_reviewed():
    dynamic = {(s.path, s.function): s.line for s in _sites() if s.dynamic}

    unreviewed = {key: line for key, line in dynamic.items() if key not in REVIEWED}
    stale = sorted(set(REVIEWED) - set(dynamic))

    assert unreviewed == {}, "SQL text built at run time: use parameters, or review it and list it in REVIEWED"
    assert stale == [], "REVIEWED lists a site that no longer builds SQL at run time: remove it"


def test_constant_sql_with_placeholders_passes_its_values_as_parameters():
    missing = [(s.path, s.function, s.line) for s in _sites() if s.placeholders and not s.has_params]

    assert missing == []


def test_the_static_analysis_tells_built_sql_from_constants():
    tree = ast.parse(
        "Q = 'SELECT 1 WHERE a = %s'\n"
        "def f(user):\n"
        "    cur.execute(Q, [user])\n"
        "    cur.execute(f'SELECT {user}')\n"
        "    cur.execute('SELECT %s' % user)\n"
        "    cur.execute(Q + ' AND b = ' + user)\n"
        "    Model.objects.raw('SELECT * FROM t WHERE id = ' + str(user))\n"
    )
    bound = _constant_strings(tree)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _sql_call(n)]

    assert [_static_text(c.args[0], bound) is not None for c in calls] == [True, False, False, False, False]
