"""The package's shape, checked: layers only import downwards (no circle, no arrow back up), no source file over
400 lines, no function over 60 lines in the outer ring, probes few and explained, and every setting's default
written once (in :mod:`cyclediff.settings`)."""

from __future__ import annotations

import ast
from dataclasses import MISSING, fields
from pathlib import Path

from cyclediff import settings as settings_module

SRC = Path(__file__).resolve().parents[1] / "src" / "cyclediff"
# layers, lowest first: a module may import its own layer and those below it, never one above
LAYERS = {"core": 0, "api": 1, "batch": 2, "jobs": 3, "bench": 3, "demo": 3, "cli": 4, "web": 4, "facade": 5}
OUTER = ("api", "batch", "jobs", "bench", "cli", "web")
PROTOCOLS = {"Denoiser", "BatchedDenoiser", "Model", "AttentionEditable", "Codec"}
# (name, literal) pairs that are mathematics, not a setting's default: strength 1 is the whole grid
NOT_DEFAULTS = {("strength", 1.0)}


def room(module: str) -> str:
    """The layer of a module path like 'cyclediff.models.base' (top-level modules and models / guidance /
    metrics are the core)."""
    parts = module.split(".")
    if module in ("cyclediff", "cyclediff.__main__"):
        return "facade"  # the package's public names
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every cyclediff module a file imports, at the top or inside a function."""
    here = module_of(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("cyclediff"):
                if node.module:  # "from . import options" imports the submodule, not the package's names
                    found.add(name)
                found.update(f"{name}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cyclediff"))
    return found


def graph() -> dict[str, set[str]]:
    files = {module_of(p): p for p in SRC.rglob("*.py")}
    return {m: {i for i in imports(p) if i in files and i != m} for m, p in files.items()}


def test_layers_import_only_downwards():
    for module, targets in graph().items():
        for target in targets:
            assert LAYERS[room(target)] <= LAYERS[room(module)], f"{module} imports {target} (a higher layer)"


def test_no_module_imports_the_demo_but_the_front_ends():
    for module, targets in graph().items():
        if room(module) in ("core", "api", "batch", "jobs"):
            assert not any(room(t) == "demo" for t in targets), f"{module} imports the demo"


def test_no_import_circle():
    deps = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph().items()}  # a package's own init
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in deps.get(m, ()):
            if state.get(t) == 1:
                raise AssertionError(" -> ".join(path[path.index(t):] + [m, t]) if t in path else f"{m} -> {t}")
            if t not in state:
                visit(t, path + [m])
        state[m] = 2

    for m in sorted(deps):
        if m not in state:
            visit(m, [])


def test_no_source_file_over_400_lines_and_no_outer_function_over_60():
    sizes = {p.relative_to(SRC): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    assert max(sizes.values()) <= 400, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    long = [(str(p.relative_to(SRC)), n.name, n.end_lineno - n.lineno + 1)
            for pkg in OUTER for p in (SRC / pkg).rglob("*.py") for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 60]
    assert not long, long


def test_probes_are_few_and_each_says_why():
    """``hasattr`` and ``isinstance`` against a protocol ask what a thing is instead of calling it: few, each with
    a comment above."""
    probes = []
    for path in SRC.rglob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and (
                    node.func.id == "hasattr" or (node.func.id == "isinstance" and len(node.args) == 2 and any(
                        isinstance(n, ast.Name) and n.id in PROTOCOLS for n in ast.walk(node.args[1])))):
                probes.append((path, node.lineno, lines))
    assert len(probes) <= 6, [(str(p.relative_to(SRC)), n) for p, n, _ in probes]
    for path, line, lines in probes:
        assert lines[line - 2].strip().startswith("#") or "#" in lines[line - 1], f"{path.name}:{line}"


def _defaults() -> dict[str, set]:
    """Every settings name with its defaults (numbers and texts) across the settings types."""
    out: dict[str, set] = {}
    for cls in (*settings_module.TASKS.values(), settings_module.RunOptions):
        for f in fields(cls):
            if f.default is not MISSING and isinstance(f.default, (int, float, str)) and not isinstance(
                    f.default, bool):
                out.setdefault(f.name, set()).add(f.default)
    return out


# parameters that hold a setting under another name (a literal given to them is that setting's default again)
RENAMED = {"threshold": "mask_threshold"}
# the modules that define the defaults: the settings types (RunOptions in its own module) and the methods' options types
DEFINING = ("settings.py", "run_options.py", "options.py")


def _click_name(call: ast.Call) -> str | None:
    """The parameter a ``click.option(...)`` / ``click.argument(...)`` call names: its bare name if given, else
    its longest ``--flag`` as click spells it."""
    decls = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    bare = [d for d in decls if not d.startswith("-")]
    if bare:
        return bare[0]
    flags = sorted((d.split("/")[0].lstrip("-") for d in decls), key=len, reverse=True)
    return flags[0].replace("-", "_") if flags else None


def _is_click(call: ast.Call) -> bool:
    f = call.func
    return isinstance(f, ast.Attribute) and f.attr in ("option", "argument") and isinstance(
        f.value, ast.Name) and f.value.id == "click"


def _given(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """(name, value) pairs a node gives: parameter defaults, keywords, dict entries, dataclass-style field
    defaults (``name: type = value``) and click options' ``default=``."""
    pairs: list[tuple[str, ast.AST]] = []
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = node.args
        pairs += list(zip([x.arg for x in a.args[len(a.args) - len(a.defaults):]], a.defaults))
        pairs += [(x.arg, d) for x, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
    elif isinstance(node, ast.Call):
        pairs += [(k.arg, k.value) for k in node.keywords if k.arg]
        if _is_click(node) and _click_name(node):
            pairs += [(_click_name(node), k.value) for k in node.keywords if k.arg == "default"]
    elif isinstance(node, ast.Dict):
        pairs += [(k.value, v) for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)
                  and isinstance(k.value, str)]
    elif isinstance(node, ast.ClassDef):  # a field's default in a class body (dataclasses)
        pairs += [(n.target.id, n.value) for n in node.body if isinstance(n, ast.AnnAssign) and n.value is not None
                  and isinstance(n.target, ast.Name)]
    return [(RENAMED.get(name, name), value) for name, value in pairs]


def test_a_setting_default_is_written_once():
    """A literal given to a name the settings define (a parameter default — also under a renamed parameter —, a
    keyword, a dict entry, a dataclass field's default, a click option's default) is a second copy of the
    default: take it from the settings (or the methods' options) instead."""
    names, found = _defaults(), []
    for path in SRC.rglob("*.py"):
        if path.name in DEFINING or path.parent.name == "demo":  # the demo's recipe is fixed on purpose
            continue
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            for name, value in _given(node):
                if not (name in names and isinstance(value, ast.Constant) and value.value in names[name]) or isinstance(
                        value.value, bool) or (name, value.value) in NOT_DEFAULTS:
                    continue
                said = lines[value.lineno - 1] + lines[value.lineno - 2]  # "# not a default: why" on or above it
                if "# not a default" not in said:
                    found.append(f"{path.relative_to(SRC)}:{value.lineno} {name}={value.value!r}")
    assert not found, found


def test_the_default_once_check_sees_renamed_parameters_dataclass_fields_and_click_defaults():
    """The check's own blind spots, closed: each form of a second copy is found."""
    code = ast.parse("""
@dataclass
class Copy:
    steps: int = 100
def f(threshold=0.5): ...
click.option("--eta", default=0.1)
click.option("--w", "guidance_scale", default=3.0)
""")
    given = {(n, v.value) for node in ast.walk(code) for n, v in _given(node) if isinstance(v, ast.Constant)}
    assert {("steps", 100), ("mask_threshold", 0.5), ("eta", 0.1), ("guidance_scale", 3.0)} <= given


def test_edit_and_translate_take_at_most_twelve_parameters_and_the_strength_cut_is_written_once():
    """The common head as keywords, a method's knobs as one options object; and one place (schedule.steps_run)
    turns (steps, strength) into the steps a run takes — a second copy is how the PIE-Bench count drifted."""
    import inspect

    from cyclediff import edit, translate

    for fn in (edit, translate):
        assert len(inspect.signature(fn).parameters) <= 12, (fn.__name__, list(inspect.signature(fn).parameters))
    copies = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            # a product of a step count and a strength in code (not in messages): the cut computed again
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
                names = {getattr(n, "id", getattr(n, "attr", None)) for n in (node.left, node.right)}
                if {"steps", "strength"} <= names and path.name != "schedule.py":
                    copies.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not copies, copies


def test_the_tests_have_one_conftest():
    """Test modules import shared helpers with ``from conftest import …``; pytest names every conftest.py module
    ``conftest``, so a second one (tests/<room>/conftest.py) shadows the first in whichever order they are collected
    and the imports fail on another machine. Shared fixtures go in tests/conftest.py."""
    tests = Path(__file__).resolve().parent
    assert sorted(p.relative_to(tests).as_posix() for p in tests.rglob("conftest.py")) == ["conftest.py"]
