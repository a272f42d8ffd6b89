"""The Dockerfiles: hadolint-clean, multi-stage, non-root, pinned, nothing secret or heavy baked in."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
from deploy_helpers import ROOT, final_stage, hadolint_binary

DOCKERFILES = [
    "services/stt/Dockerfile",
    "services/tts/Dockerfile",
    "services/llm/Dockerfile",
    "gateway/Dockerfile",
    "deploy/models/Dockerfile",
]


def test_hadolint_is_real_and_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    proc = subprocess.run([str(hadolint_binary()), "--no-color", str(bad)], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "DL3006" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_clean(dockerfile: str) -> None:
    # Default failure threshold: any finding, info level included, fails.
    proc = subprocess.run(
        [str(hadolint_binary()), "--no-color", dockerfile], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_multi_stage_non_root_slim(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, re.M)
    assert len(froms) >= 2, "builder and runtime stages expected"
    default_base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert default_base and re.fullmatch(r"python:3\.11-slim-\w+(@sha256:[0-9a-f]{64})?", default_base.group(1))
    assert all(image == "${PYTHON_IMAGE}" for image, _ in froms), froms
    stage = final_stage(ROOT / dockerfile)
    users = [args for word, args in stage if word == "USER"]
    assert users, "the runtime stage must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"USER {users[-1]}: numeric non-root uid expected"
    copies = [args for word, args in stage if word == "COPY"]
    assert any(c.startswith("--from=builder /opt/venv") for c in copies), "runtime takes the builder's venv"
    runtime_text = " ".join(args for _, args in stage)
    assert "build-essential" not in runtime_text and "cmake" not in runtime_text, "compilers in the runtime"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_reproducible_installs_and_nothing_baked(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    for install in re.findall(r"pip install ([^\n&;]*)", text):
        if "-c constraints.txt" in install or re.fullmatch(r"(--no-deps )?\$(ORT_)?CUDA_WHEELS;?", install.strip()):
            continue
        pytest.fail(f"unpinned pip install: {install!r}")
    for spec in re.findall(r'ARG (?:ORT_)?CUDA_WHEELS="([^"]*)"', text.replace("\\\n", " ")):
        for req in spec.split():
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.\-]*", req), f"unpinned {req}"
    copies = " ".join(re.findall(r"^COPY (.*)$", text, re.M))
    assert ".env" not in copies and "models/" not in copies.replace("/app/models", ""), copies
    assert not re.search(r"^ENV .*(TOKEN|SECRET|PASSWORD)", text, re.M), "secret-looking ENV in an image"


def test_dockerignore_keeps_secrets_weights_and_venv_out() -> None:
    lines = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".env.*", "models", ".venv", ".git", "data", "var"} <= lines
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "shared", "services", "gateway", "scripts"):
        assert needed not in lines, f"{needed} is COPYed by the Dockerfiles"


def test_cuda_variants_are_build_args() -> None:
    for dockerfile in ("services/stt/Dockerfile", "services/tts/Dockerfile"):
        text = (ROOT / dockerfile).read_text()
        assert re.search(r"^ARG VARIANT=cpu$", text, re.M), dockerfile
        assert 'if [ "$VARIANT" = cuda ]' in text, dockerfile


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_gateway_image_holds_only_what_the_gateway_imports() -> None:
    text = (ROOT / "gateway/Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (?!--from)(\S+)/ \S+/$", text, re.M))
    assert copied == {"shared", "gateway"}, copied
    # ...so nothing it runs may import the model services' code (services/), even lazily
    offenders = [
        str(path.relative_to(ROOT))
        for package in copied
        for path in sorted((ROOT / package).rglob("*.py"))
        if "services" in _imported_roots(path)
    ]
    assert not offenders, f"import services/ but the gateway image has no services/: {offenders}"
