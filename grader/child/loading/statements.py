"""Which top-level statements of student code run at load: definitions, and what graded code needs.

Nothing heavy runs at load: a notebook's training loops, downloads and plots
are skipped. What always runs is imports, function and class definitions,
assignments of literals and plain aliases (``F = torch.nn.functional``).
A statement of any other kind runs only when it defines (binds or fills in) a
global name that graded code reads: the rubric's targets, and transitively
every global that the definitions they use read, e.g. the notebook's
``device = torch.device("cuda" if torch.cuda.is_available() else "cpu")``
read by ``C3_layer.forward``, or a module-level ``criterion`` read by a
training loop. Such statements run in source order under a short time limit
(see `grader.child.ops`); everything else is skipped and reported with its line.

Free names are computed with `symtable` for nested scopes (functions, classes,
lambdas, comprehensions: it knows ``global``, class-scope rules and default
arguments) and with an ordered visitor for module-level code, so that a name
a statement binds before reading it (a loop variable) is not taken as read.
"""
from __future__ import annotations

import ast
import symtable
from dataclasses import dataclass, field

# Method calls that fill in a container in place: ``table.append(...)`` at top
# level defines part of ``table`` as much as an assignment does.
MUTATING_METHODS = frozenset({"append", "extend", "insert", "update", "add", "setdefault", "__setitem__"})

DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass
class Statement:
    """One top-level statement of one unit (a .py file, or a notebook cell), with what it binds and reads."""

    unit: str  # "hw4.py" or "hw4.ipynb cell 3"
    node: ast.stmt
    text: str  # its first line, shortened, for messages
    binds: frozenset[str]  # names it binds or fills in at module level
    reads: frozenset[str]  # global names it needs: read at module level or by any scope it creates
    always: bool  # imports, definitions, literals: run whatever is needed
    run: bool = False  # decided by `plan_statements`
    reached_from: list[str] = field(default_factory=list)  # the targets whose definitions need it

    @property
    def where(self) -> str:
        return f"{self.unit}, line {self.node.lineno}"


@dataclass
class LoadPlan:
    statements: list[Statement]
    needed: set[str]  # every global name graded code reads, transitively

    @property
    def skipped(self) -> list[Statement]:
        return [s for s in self.statements if not s.run]


# --- what a statement binds and reads ----------------------------------------------------


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def _is_name_chain(node: ast.expr) -> bool:
    """``F = torch.nn.functional`` style aliases: attribute look-ups on names, no calls."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _runs_always(stmt: ast.stmt) -> bool:
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Pass, *DEFINITIONS)):
        return True
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        simple_targets = all(isinstance(t, (ast.Name, ast.Tuple)) for t in targets)
        value = stmt.value
        return simple_targets and value is not None and (_is_literal(value) or _is_name_chain(value))
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
        return True  # a docstring or bare string: harmless, and not worth reporting as skipped
    if isinstance(stmt, ast.Try):
        # try: import x / except ImportError: ... is a common guard around optional imports.
        return all(isinstance(s, (ast.Import, ast.ImportFrom, ast.Pass)) for s in stmt.body)
    return False


class _ModuleLevel(ast.NodeVisitor):
    """Names one top-level statement binds and reads at module level, visited in evaluation order.

    Nested scopes (function bodies, lambdas, comprehensions after their first
    iterable) are not entered: their free names come from `symtable`.
    """

    def __init__(self) -> None:
        self.reads: set[str] = set()
        self.binds: set[str] = set()

    def _bind(self, name: str) -> None:
        self.binds.add(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            if node.id not in self.binds:
                self.reads.add(node.id)
        else:
            self._bind(node.id)

    def _store_target(self, target: ast.expr) -> None:
        """An assignment target: names are bound; ``cfg['k'] = v`` / ``model.fc = m`` fill in their base."""
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            base = target
            while isinstance(base, (ast.Attribute, ast.Subscript)):
                if isinstance(base, ast.Subscript):
                    self.visit(base.slice)
                base = base.value
            if isinstance(base, ast.Name):
                if base.id not in self.binds:
                    self.reads.add(base.id)
                self._bind(base.id)
            else:
                self.visit(base)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._store_target(elt)
        elif isinstance(target, ast.Starred):
            self._store_target(target.value)
        else:
            self.visit(target)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._store_target(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self._store_target(node.target)
        self.visit(node.annotation)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name) and node.target.id not in self.binds:
            self.reads.add(node.target.id)
        self.visit(node.value)
        self._store_target(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self._store_target(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._store_target(node.target)
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._store_target(item.optional_vars)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncWith = visit_With

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._bind(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._store_target(target)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in MUTATING_METHODS and isinstance(func.value, ast.Name):
            self._bind(func.value.id)

    def _arguments(self, args: ast.arguments) -> None:
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.visit(default)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        # Evaluated when the definition runs: decorators, defaults, annotations.
        for expr in node.decorator_list:
            self.visit(expr)
        self._arguments(node.args)
        for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg, node.args.kwarg]:
            if arg is not None and arg.annotation is not None:
                self.visit(arg.annotation)
        if node.returns is not None:
            self.visit(node.returns)
        self._bind(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        self._bind(node.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._arguments(node.args)

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        self.visit(node.generators[0].iter)  # the only part evaluated in the enclosing scope

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._bind(alias.asname or alias.name.split(".")[0])

    visit_ImportFrom = visit_Import

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self.generic_visit(node)
        if node.name:
            self._bind(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.generic_visit(node)
        if node.rest:
            self._bind(node.rest)


def _scope_globals(table: symtable.SymbolTable) -> set[str]:
    """Global names read anywhere inside a nested scope (its own nested scopes included)."""
    names = {s.get_name() for s in table.get_symbols() if s.is_referenced() and s.is_global()}
    for child in table.get_children():
        names |= _scope_globals(child)
    return names


def _first_line(stmt: ast.stmt) -> int:
    decorators = getattr(stmt, "decorator_list", [])
    return min([stmt.lineno, *(d.lineno for d in decorators)])


def analyse_unit(unit: str, source: str, tree: ast.Module) -> list[Statement]:
    """Every top-level statement of one parsed unit, with the names it binds and reads."""
    lines = source.splitlines()
    try:
        scopes = symtable.symtable(source, unit, "exec").get_children()
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        scopes = None  # then every name a nested scope mentions counts as read (a safe superset)
    out = []
    for stmt in tree.body:
        visitor = _ModuleLevel()
        visitor.visit(stmt)
        reads = set(visitor.reads)
        start, end = _first_line(stmt), stmt.end_lineno or stmt.lineno
        if scopes is None:
            reads |= {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        else:
            for table in scopes:
                if start <= table.get_lineno() <= end:
                    reads |= _scope_globals(table)
        text = lines[stmt.lineno - 1].strip() if stmt.lineno - 1 < len(lines) else ""
        if len(text) > 80:
            text = text[:77] + "..."
        out.append(Statement(unit=unit, node=stmt, text=text, binds=frozenset(visitor.binds),
                             reads=frozenset(reads), always=_runs_always(stmt)))
    return out


# --- which statements run ------------------------------------------------------------------


def _closure(seed: str, definers: dict[str, list[int]], statements: list[Statement]) -> tuple[set[str], set[int]]:
    """Every name the seed needs, transitively, and the statements that define them."""
    names, found = {seed}, set()
    todo = [seed]
    while todo:
        name = todo.pop()
        for index in definers.get(name, []):
            if index in found:
                continue
            found.add(index)
            for read in statements[index].reads:
                if read not in names:
                    names.add(read)
                    todo.append(read)
    return names, found


def plan_statements(statements: list[Statement], targets: list[str] | None, *, mode: str) -> LoadPlan:
    """Mark which statements run. targets: the names the rubric's checks use (None: every definition's).

    mode "all" runs everything (a rubric may choose it); "definitions" is the rule in the module docstring.
    """
    if mode == "all":
        for stmt in statements:
            stmt.run = True
        return LoadPlan(statements, set())
    definers: dict[str, list[int]] = {}
    for i, stmt in enumerate(statements):
        for name in stmt.binds:
            definers.setdefault(name, []).append(i)
    if targets is None:
        # No list from the rubric: everything any definition reads (a safe superset).
        seeds = sorted({name for stmt in statements if isinstance(stmt.node, DEFINITIONS) for name in stmt.binds})
    else:
        seeds = sorted({t.split(".", 1)[0] for t in targets if t})
    needed: set[str] = set()
    for seed in seeds:
        names, indices = _closure(seed, definers, statements)
        needed |= names
        for index in indices:
            statements[index].reached_from.append(seed)
    for stmt in statements:
        stmt.run = stmt.always or bool(stmt.reached_from)
    return LoadPlan(statements, needed)
