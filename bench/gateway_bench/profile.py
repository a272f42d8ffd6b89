"""py-spy profile of the gateway under load: a flame graph SVG and a top-functions text summary.

Two ``py-spy record --nonblocking`` run side by side on the gateway's pid for the same seconds
(non-blocking: the gateway is never paused; py-spy reads its memory): one writes the flame graph,
the other the collapsed stacks (``--format raw``), from which :func:`summarize_collapsed` counts
what share of the samples each function (inclusive: anywhere on the stack; self: at the top) and
each known stage of the per-frame path took. Idle threads are not sampled (py-spy's default), so
the shares are of the CPU the gateway spent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Smart Turn (all)", ("smart_turn.py",)),
    ("  Smart Turn ONNX run", ("smart_turn.py", "onnxruntime")),
    ("  Smart Turn features", ("smart_turn.py", "feature_extractor.py")),
    ("Silero VAD", ("vad.py",)),
    ("Twilio JSON/base64", ("twilio_media.py",)),
    ("soxr resampling", ("soxr",)),
    ("μ-law", ("ulaw_",)),
    ("outbound pacing (Playback)", ("playback.py",)),
    ("receive loop (session)", ("_receive_loop",)),
    ("websocket framing (websockets)", ("websockets/",)),
    ("uvicorn/starlette websocket glue", ("uvicorn/", "starlette/")),
    ("TTS stream client", ("tts_stream.py",)),
    ("LLM client (openai/httpx)", ("openai/",)),
    ("Redis writes", ("redis/",)),
    ("logging", ("logging/",)),
)
"""Named parts of the gateway's work: a sample counts for a stage when every pattern occurs in its
stack (file names, function names or package paths, as py-spy prints them)."""


def short_frame(frame: str) -> str:
    """``"process (gateway/conversation/vad.py:40)"`` → ``"process (vad.py)"`` (no line, last path part)."""
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip()
    return f"{m['func']} ({Path(m['file']).name})"


def parse_collapsed(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """py-spy ``--format raw`` lines (``frame;frame;… count``, root first) → (frames, count)."""
    out = []
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def summarize_collapsed(stacks: list[tuple[list[str], int]], top: int = 25) -> str:
    """A plain-text summary: total samples, the stages of :data:`STAGES`, the top functions by
    inclusive and by self share."""
    total = sum(c for _, c in stacks)
    if total == 0:
        return "no samples\n"
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    for frames, count in stacks:
        joined = ";".join(frames)
        for name in {short_frame(f) for f in frames}:
            inclusive[name] += count
        own[short_frame(frames[-1])] += count
        for label, patterns in STAGES:
            if all(p in joined for p in patterns):
                stages[label] += count
    lines = [f"py-spy samples: {total} (non-idle, all threads)", "", "stage                                  share"]
    lines += [f"{label:<38} {100 * stages[label] / total:5.1f} %" for label, _ in STAGES]
    lines += ["", f"top {top} functions, inclusive (anywhere on the stack)"]
    lines += [f"{100 * c / total:5.1f} %  {name}" for name, c in inclusive.most_common(top)]
    lines += ["", f"top {top} functions, self (on top of the stack)"]
    lines += [f"{100 * c / total:5.1f} %  {name}" for name, c in own.most_common(top)]
    return "\n".join(lines) + "\n"


def py_spy() -> str | None:
    """The py-spy executable (beside this Python first, then on PATH)."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.is_file() else shutil.which("py-spy")


def record(pid: int, seconds: float, svg: Path, summary: Path, rate_hz: int = 100) -> str | None:
    """Profile ``pid`` for ``seconds``; write the flame graph and the summary text.

    Returns ``None`` on success, else why not (py-spy missing, no permission to read the process).
    """
    exe = py_spy()
    if exe is None:
        return "py-spy is not installed (pip install py-spy==0.4.3)"
    svg.parent.mkdir(parents=True, exist_ok=True)
    raw = summary.with_suffix(".raw")
    base = [exe, "record", "--pid", str(pid), "--duration", str(round(seconds)), "--rate", str(rate_hz)]
    base.append("--nonblocking")
    procs = [
        subprocess.Popen([*base, "--format", fmt, "--output", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for fmt, out in (("flamegraph", svg), ("raw", raw))
    ]
    errors = []
    for proc in procs:
        _, err = proc.communicate(timeout=seconds + 120)
        if proc.returncode != 0:
            errors.append(err.decode(errors="replace").strip()[-400:])
    if errors or not raw.is_file():
        return "py-spy failed: " + " | ".join(errors)
    text = summarize_collapsed(parse_collapsed(raw.read_text().splitlines()))
    summary.write_text(text)
    raw.unlink()
    return None
