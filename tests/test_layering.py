"""Architecture rules that code review would otherwise have to remember."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports(folder: str) -> dict[str, set[str]]:
    found = {}
    for path in (REPO / folder).rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


def test_transforms_and_schemas_never_import_dagster_or_the_warehouse():
    for folder in ("transforms", "schemas"):
        offenders = {f: n & {"dagster", "warehouse", "orchestration"} for f, n in _imports(folder).items()}
        assert {f: n for f, n in offenders.items() if n} == {}


def test_warehouse_does_not_import_orchestration_outside_the_cli():
    offenders = {f for f, n in _imports("warehouse").items() if "orchestration" in n and not f.endswith("cli.py")}
    assert offenders == set()
