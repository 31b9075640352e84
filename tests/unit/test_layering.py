"""The house's boundaries, read from the source (AST): who may import whom.

- ``twin/`` and ``loadtests/`` reach the stack only through ``services.sdk`` (and the pure
  ``services.rules``); the console script's root (``twin/cli.py``) may mount
  ``services.cli``.
- ``services/common`` imports no card system; a card system never imports another one
  (peers are HTTP clients) nor the client SDK.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ("registry", "healthcard", "socialcard", "payment", "channel", "hospital", "data")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a file, relative ones resolved."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    if path.name == "__init__.py":
        package = path.relative_to(ROOT).parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            # "from services import sdk" names a module too
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names
                    if module in ("services", "twin")]
    return out


def files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def breaches(paths: list[Path], allowed) -> list[str]:
    return [f"{p.relative_to(ROOT)}:{line} imports {mod}"
            for p in paths for line, mod in imported_modules(p) if not allowed(p, mod)]


def test_twin_and_loadtests_reach_the_stack_only_through_the_sdk() -> None:
    def allowed(path: Path, mod: str) -> bool:
        if mod != "services" and not mod.startswith("services."):
            return True
        if mod.startswith(("services.sdk", "services.rules")):
            return True
        return path == ROOT / "twin" / "cli.py" and mod == "services.cli"

    assert breaches(files("twin", "loadtests"), allowed) == []


def _system_of(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "services" and parts[1] in SYSTEMS \
        else None


def test_common_imports_no_system() -> None:
    assert breaches(files("services/common"),
                    lambda p, mod: _system_of(mod) is None
                    and not mod.startswith("services.sdk")) == []


@pytest.mark.parametrize("system", [s for s in SYSTEMS if (ROOT / "services" / s).is_dir()])
def test_a_system_imports_no_other_system_nor_the_sdk(system: str) -> None:
    assert breaches(files(f"services/{system}"),
                    lambda p, mod: _system_of(mod) in (None, system)
                    and not mod.startswith("services.sdk")) == []


def test_the_rule_catches_a_breach(tmp_path: Path) -> None:
    """The checker itself: a relative import that climbs into another system is seen."""
    bad = ROOT / "services" / "payment" / "_probe_breach.py"
    bad.write_text("from ..healthcard.cards import CardService\n")
    try:
        found = breaches([bad], lambda p, mod: _system_of(mod) in (None, "payment"))
    finally:
        bad.unlink()
    assert found == ["services/payment/_probe_breach.py:1 imports services.healthcard.cards"]


def test_infrastructure_imports_nothing_the_card_systems_share() -> None:
    infra = [p for p in files("services/common") if "cards" not in p.parts]
    assert breaches(infra, lambda p, mod: not mod.startswith("services.common.cards")) == []


ROUTE_MODULES = [p for p in files("services") if p.name.endswith("api.py")
                 or p == ROOT / "services" / "common" / "cards" / "routes.py"]


def test_route_modules_hold_no_sql() -> None:
    assert ROUTE_MODULES
    assert breaches(ROUTE_MODULES, lambda p, mod: mod.split(".")[0] != "sqlalchemy") == []


@pytest.mark.parametrize("path", ROUTE_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_routes_are_module_level(path: Path) -> None:
    """Every route decorator sits on a module-level function of a module-level router:
    no router is built inside a function (no ``make_router`` closures)."""
    tree = ast.parse(path.read_text())
    nested = [f"{node.name}:{node.lineno}" for top in tree.body
              if isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef)
              for node in ast.walk(top)
              if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node is not top
              and any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)
                      and d.func.attr in ("get", "post", "put", "patch", "delete")
                      for d in node.decorator_list)]
    made = [f"APIRouter():{n.lineno}" for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "APIRouter"
            and not any(isinstance(t, ast.Assign) and t.value is n for t in tree.body)]
    assert nested == [] and made == []


def test_no_folder_holds_more_than_fifteen_modules() -> None:
    crowded = {}
    for top in ("services", "twin", "loadtests", "tests", "bench"):
        for folder in [ROOT / top, *(p for p in (ROOT / top).rglob("*") if p.is_dir())]:
            n = len(list(folder.glob("*.py")))
            if n > 15 and "__pycache__" not in folder.parts:
                crowded[str(folder.relative_to(ROOT))] = n
    assert crowded == {}
