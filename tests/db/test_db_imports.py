"""gateway/db stays at the bottom: its modules import neither the settings nor the layers above at
module level (the old circle config → db.engine → db.migrate → config, and db → conversation)."""

from __future__ import annotations

import ast
from pathlib import Path

DB = Path(__file__).resolve().parents[2] / "gateway" / "db"
ABOVE = ("gateway.config", "gateway.conversation", "gateway.agents", "gateway.after_call", "gateway.admin")
DEPRECATED: set[str] = set()
"""Old homes kept as re-exports until their last importer moves (none left)."""


def module_level_imports(path: Path) -> list[str]:
    """Modules imported by ``path``'s top-level statements (not inside functions or TYPE_CHECKING)."""
    names: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_gateway_db_imports_nothing_above_it_at_module_level() -> None:
    files = [p for p in DB.rglob("*.py") if p.relative_to(DB).as_posix() not in DEPRECATED]
    assert len(files) > 8  # engine, models, migrate, __main__, repos/…, migrations/…
    offending = {
        p.relative_to(DB).as_posix(): name for p in files for name in module_level_imports(p) if name.startswith(ABOVE)
    }
    assert offending == {}


def test_the_check_sees_a_module_level_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from gateway.config import GatewaySettings\n\ndef f():\n    import gateway.admin\n")
    assert module_level_imports(bad) == ["gateway.config"]
