"""The vLLM kit's dependency resolution and checks (``bench/gpu/make_vllm_kit.sh``, ``bench/gpu/vllm.sh``).

``overrides`` / ``carry-list RESOLVED``  (build machine)
    The ``uv pip compile --override`` file (the machine's versions, the pins the README keeps, the
    kernel packs removed by a never-true marker), and which of uv's resolved pins to download: those
    not on the machine (plus setuptools 80: vLLM wants <81, the machine has 81) and not dropped.
``check-wheels DIR``  (build machine)
    Every Requires-Dist (no extras; Python 3.12, Linux x86-64) of every wheel in DIR is carried in
    DIR, on the GPU machine (KINDS.md's list, below), or dropped on purpose; exits 1 otherwise.
``check-installed SITE [--fallback DIR]``  (GPU machine, with SITE first on PYTHONPATH)
    The same against what is really installed there; with ``--fallback``, wheels from DIR (newer
    copies of packages the machine has) go into SITE where the machine's version is too old.
    Prints what is left, exits 0 (a warning).
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import zipfile
from pathlib import Path

MACHINE_VERSIONS = {
    "accelerate": "1.15.0", "huggingface-hub": "1.33.0", "numpy": "2.5.2", "safetensors": "0.8.0",
    "sentencepiece": "0.2.2", "tiktoken": "0.14.0", "tokenizers": "0.23.2", "torch": "2.11.0",
    "torchaudio": "2.11.0", "torchvision": "0.26.0", "transformers": "5.17.0", "triton": "3.6.0",
    "setuptools": "81",
}  # fmt: skip
MACHINE_NAMES = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings
cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils
execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet
httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax
jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning
lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib
mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc
nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver
nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink
nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax
opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip
pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton
typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
xxhash yarl zipp
""".split()
# Left out on purpose (shared/gpu/README.md): kernel packs Hopper + a dense Qwen2 don't need, and
# PyNvVideoCodec (43 MB, GPU video decoding for multimodal inputs, imported lazily).
DROPPED = """
flashinfer-python flashinfer-cubin tilelang nvidia-cutlass-dsl quack-kernels tokenspeed-mla
humming-kernels torchcodec fastsafetensors nvidia-cudnn-frontend pynvvideocodec
""".split()
# Pinned to the machine's versions for the resolution (and then not downloaded: it has them).
OVERRIDE_NAMES = """
torch torchaudio torchvision triton transformers tokenizers numpy safetensors tiktoken huggingface-hub
sentencepiece
""".split()
EXTRA_PINS = ["apache-tvm-ffi==0.1.10", "xgrammar==0.2.7", "setuptools==80.10.2"]  # README's recipe
ALWAYS_CARRY = ["setuptools"]
# Requirements knowingly broken by the overrides (the machine's numpy 2.5.2 and its own numba; the
# README's run went end to end with them).
ACCEPTED = {("mistral-common", "numpy"), ("vllm", "numba")}
# Packages the machine has at versions KINDS.md does not record: uv's resolved versions travel in
# fallback/, and `check-installed --fallback` puts one into SITE only where the machine's is too old
# for a carried wheel (or for a machine package that a shadowed one breaks).
NO_FALLBACK = (
    OVERRIDE_NAMES
    + """
numba llvmlite opencv-python-headless sympy mpmath networkx ninja hf-xet setuptools cuda-bindings
cuda-pathfinder cuda-toolkit
""".split()
)
MARKER_ENV = {
    "python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
    "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": "",
}  # fmt: skip


def say(msg: str) -> None:
    """One line to stdout, flushed (pip runs in between and writes to the same stream)."""
    sys.stdout.write(f"{msg}\n")
    sys.stdout.flush()


@functools.cache
def _packaging():
    """(Requirement, canonicalize_name, parse_wheel_filename), from pip's copy if need be (chosen
    once: a fallback ``packaging`` put into SITE mid-run must not mix two copies' classes)."""
    try:
        from packaging import requirements, utils
    except ImportError:
        from pip._vendor.packaging import requirements, utils  # type: ignore[no-redef]
    return requirements.Requirement, utils.canonicalize_name, utils.parse_wheel_filename


# ---------------------------------------------------------------------------------------- checks
def _requirements(metadata: str) -> list:
    Requirement, _, _ = _packaging()

    reqs = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is None or req.marker.evaluate(MARKER_ENV):
            reqs.append(req)
    return reqs


def _judge(
    owner: str, req, carried: dict[str, str], machine: dict[str, str | None], problems: list, notes: list
) -> None:
    _, canonicalize_name, _ = _packaging()

    name = canonicalize_name(req.name)
    if (canonicalize_name(owner.split("==")[0]), name) in ACCEPTED:
        notes.append(f"{owner} needs {req}: overridden on purpose")
    elif name in carried:
        if carried[name] and not req.specifier.contains(carried[name], prereleases=True):
            problems.append(f"{owner} needs {req}; carried {name}=={carried[name]}")
    elif name in machine:
        ver = machine[name]
        if ver is None:
            if str(req.specifier):
                notes.append(f"{owner} needs {req}: on the machine, version not recorded")
        elif not req.specifier.contains(ver, prereleases=True):
            problems.append(f"{owner} needs {req}; the machine has {name}=={ver}")
    elif name in DROPPED:
        notes.append(f"{owner} needs {req}: dropped on purpose")
    else:
        problems.append(f"{owner} needs {req}: MISSING (neither carried nor on the machine)")


def overrides() -> str:
    lines = [f"{n}=={MACHINE_VERSIONS[n]}" for n in OVERRIDE_NAMES] + EXTRA_PINS
    lines += [f'{n}; python_version < "0"' for n in DROPPED]  # never true: the dependency is gone
    return "\n".join(lines) + "\n"


def carry_list(resolved: Path, fallback: bool = False) -> str:
    """Pins to carry (or, with ``fallback``, the machine's packages to carry as fallbacks)."""
    _, canonicalize_name, _ = _packaging()

    machine = {canonicalize_name(n) for n in MACHINE_NAMES}
    keep = []
    for line in resolved.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line)
        if not m:  # the local vllm wheel (``vllm @ file://...``), blank lines
            continue
        name = canonicalize_name(m[1])
        on_machine = name in machine and name not in ALWAYS_CARRY
        if fallback:
            if on_machine and name not in NO_FALLBACK and not name.startswith("nvidia-"):
                keep.append(line)
        elif name not in DROPPED and not on_machine:
            keep.append(line)
    return "\n".join(keep) + "\n"


def check_wheels(folder: Path) -> int:
    _, canonicalize_name, _ = _packaging()

    carried, metas = {}, {}
    for whl in sorted(folder.glob("*.whl")):
        with zipfile.ZipFile(whl) as z:
            meta = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
            text = z.read(meta).decode()
        fields = dict(re.findall(r"^(Name|Version): (.+)$", text, re.M))
        name = canonicalize_name(fields["Name"].strip())
        carried[name] = fields["Version"].strip()
        metas[name] = text
    machine: dict[str, str | None] = {canonicalize_name(n): None for n in MACHINE_NAMES}
    machine.update({canonicalize_name(k): v for k, v in MACHINE_VERSIONS.items()})
    problems: list[str] = []
    notes: list[str] = []
    for owner, text in metas.items():
        for req in _requirements(text):
            _judge(f"{owner}=={carried[owner]}", req, carried, machine, problems, notes)
    say(f"check-wheels: {len(carried)} wheels in {folder}")
    for n in sorted(set(notes)):
        say(f"  note: {n}")
    for p in problems:
        say(f"  PROBLEM: {p}")
    say(f"check-wheels: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _dists(paths) -> list:
    """Distributions under ``paths``, in order, scanned afresh (importlib.metadata caches by mtime)."""
    from importlib import metadata

    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += [
                metadata.PathDistribution(i) for i in sorted(p.glob("*.dist-info")) + sorted(p.glob("*.egg-info"))
            ]
    return found


def _installed_problems(site: Path) -> tuple[list, list, dict]:
    """(problems, notes, needs): requirements of SITE's dists, and of the machine's dists on
    packages that SITE shadows, checked against what this interpreter really imports."""
    from importlib import metadata

    _, canonicalize_name, _ = _packaging()

    carried = {canonicalize_name(d.metadata["Name"]): d for d in _dists([site])}
    first: dict[str, metadata.Distribution] = {}
    for d in _dists(sys.path):  # sys.path order: SITE first when it leads PYTHONPATH
        if d.metadata["Name"]:
            first.setdefault(canonicalize_name(d.metadata["Name"]), d)
    installed = {n: d.version for n, d in first.items()}
    problems: list[str] = []
    notes: list[str] = []
    needs: dict[str, list] = {}  # package -> requirements on it that failed
    for name, d in sorted(first.items()):
        for req in _requirements(d.read_text("METADATA") or ""):
            target = canonicalize_name(req.name)
            if name not in carried and target not in carried:
                continue  # the machine's own consistency is not ours to judge
            before = len(problems)
            _judge(f"{name}=={d.version}", req, installed, {}, problems, notes)
            if len(problems) > before:
                needs.setdefault(target, []).append(req)
    return problems, notes, needs


def check_installed(site: Path, fallback: Path | None) -> int:
    """Report; with ``fallback``, install fallback wheels into SITE until nothing more helps."""
    import subprocess
    from importlib import invalidate_caches

    _, canonicalize_name, parse_wheel_filename = _packaging()

    wheels = {}
    if fallback is not None:
        for whl in fallback.glob("*.whl"):
            name, ver, _, _ = parse_wheel_filename(whl.name)
            wheels[canonicalize_name(name)] = (str(ver), whl)
    for _round in range(5):
        problems, notes, needs = _installed_problems(site)
        fix = [
            wheels[n][1]
            for n, reqs in needs.items()
            if n in wheels and all(r.specifier.contains(wheels[n][0], prereleases=True) for r in reqs)
        ]
        fix = [w for w in fix if not (site / ".fallback" / w.name).exists()]
        if not fix:
            break
        say(f"  check-installed: missing or too old on this machine; installing fallbacks {[w.name for w in fix]}")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
             "--no-cache-dir", "--upgrade", "--disable-pip-version-check", "--target", str(site), *map(str, fix)],
            check=True,
        )  # fmt: skip
        (site / ".fallback").mkdir(exist_ok=True)
        for w in fix:
            (site / ".fallback" / w.name).touch()
        invalidate_caches()
    for n in sorted(set(notes)):
        say(f"  note: {n}")
    for p in problems:
        say(f"  WARNING: {p}")
    say(f"check-installed: {site}: {len(problems)} problem(s)")
    return 0


def main() -> int:
    """CLI: ``overrides``, ``carry-list``, ``check-wheels``, ``check-installed``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("overrides")
    p = sub.add_parser("carry-list")
    p.add_argument("resolved", type=Path)
    p.add_argument("--fallback", action="store_true")
    sub.add_parser("check-wheels").add_argument("folder", type=Path)
    p = sub.add_parser("check-installed")
    p.add_argument("site", type=Path)
    p.add_argument("--fallback", type=Path, help="folder of fallback wheels to install where needed")
    args = parser.parse_args()
    if args.cmd == "overrides":
        sys.stdout.write(overrides())
    elif args.cmd == "carry-list":
        sys.stdout.write(carry_list(args.resolved, args.fallback))
    elif args.cmd == "check-wheels":
        return check_wheels(args.folder)
    elif args.cmd == "check-installed":
        return check_installed(args.site, args.fallback)
    return 0


if __name__ == "__main__":
    sys.exit(main())
