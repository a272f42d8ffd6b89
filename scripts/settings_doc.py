"""Render every service's settings (env var, default, description) as Markdown tables into README.

The gateway's settings come as a table of global fields, then one table per group
(``GATEWAY_<GROUP>__<FIELD>``, with the flat name each field had before the groups as its alias).
``python scripts/settings_doc.py`` rewrites the block between ``<!-- settings:start -->`` and
``<!-- settings:end -->`` in README.md; ``--check`` exits 1 if README is out of date.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import sys
from pathlib import Path

from pydantic import BaseModel
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def settings_classes() -> list[tuple[str, type[BaseSettings]]]:
    """(title, class) for each service, in README order."""
    from gateway.config import GatewaySettings
    from services.llm.config import LLMSettings
    from services.stt.config import STTSettings
    from services.tts.config import TTSSettings

    return [
        ("Gateway", GatewaySettings),
        ("STT", STTSettings),
        ("TTS", TTSSettings),
        ("LLM (CPU stand-in)", LLMSettings),
    ]


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal after each field) across the class hierarchy."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for prev, node in itertools.pairwise(body):
            if (
                isinstance(prev, ast.AnnAssign)
                and isinstance(prev.target, ast.Name)
                and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def _default(cls: type[BaseModel], name: str) -> str:
    field = cls.model_fields[name]
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "(unset)"
    text = str(value.get_secret_value() and "(set)" if hasattr(value, "get_secret_value") else value)
    text = text.replace(str(ROOT) + "/", "").replace("\n", " ")
    if len(text) > 60:
        text = text[:57] + "…"
    return f"`{text}`" if text else "(empty)"


def _rows(cls: type[BaseModel], names: list[str], prefix: str, aliases: dict[str, str] | None = None) -> list[str]:
    """One table row per field ``names`` of ``cls``: ``prefix + NAME``, (its flat alias,) default, meaning."""
    docs = field_docs(cls)
    rows = []
    for name in names:
        alias = f" `{aliases[name]}` |" if aliases is not None else ""
        rows.append(f"| `{(prefix + name).upper()}` |{alias} {_default(cls, name)} | {docs.get(name, '')} |")
    return rows


def gateway_tables(cls: type[BaseSettings]) -> list[str]:
    """The gateway's global settings, then one table per group with each field's flat alias."""
    from gateway.config import GROUPS, legacy_fields

    prefix = str(cls.model_config.get("env_prefix", ""))
    flat = {path: name for name, path in legacy_fields().items()}
    top = [name for name in cls.model_fields if name not in GROUPS]
    out = ["**Gateway**", "", "| variable | default | meaning |", "|---|---|---|", *_rows(cls, top, prefix), ""]
    for group, model in GROUPS.items():
        aliases = {field: f"{prefix}{flat[(group, field)]}".upper() for field in model.model_fields}
        summary = " ".join((model.__doc__ or "").split())
        out += [f"**Gateway `{group}`** — {summary}", "", "| variable | flat alias | default | meaning |"]
        out += ["|---|---|---|---|", *_rows(model, list(model.model_fields), f"{prefix}{group}__", aliases), ""]
    return out


def render() -> str:
    """The Markdown block."""
    out = [START, ""]
    for title, cls in settings_classes():
        if title == "Gateway":
            out += gateway_tables(cls)
            continue
        prefix = str(cls.model_config.get("env_prefix", ""))
        out += [f"**{title}**", "", "| variable | default | meaning |", "|---|---|---|"]
        out += [*_rows(cls, list(cls.model_fields), prefix), ""]
    out.append(END)
    return "\n".join(out)


def main() -> int:
    """Rewrite README's settings block, or check it with ``--check``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        sys.stderr.write("README.md has no settings markers\n")
        return 1
    new = text[: text.index(START)] + render() + text[text.index(END) + len(END) :]
    if args.check:
        if new != text:
            sys.stderr.write("README.md settings are out of date: run `make docs`\n")
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
