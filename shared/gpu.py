"""``GET /gpu`` of the STT and TTS services: one schema (:class:`GPUInfo`), one reader (:func:`gpu_info`).

It reports the device, memory used/total (MiB, the whole card's) and utilisation (%), read from NVML
through ``pynvml`` (package ``nvidia-ml-py``) when it is installed, else from
``nvidia-smi --query-gpu`` (shipped with the NVIDIA driver); on CPU, or when neither answers, the
numbers are ``None``. Nothing here needs a GPU library at import.
"""

from __future__ import annotations

import shutil
import subprocess

from pydantic import BaseModel


class GPUInfo(BaseModel):
    """``GET /gpu``: the accelerator the model runs on; all numbers ``None`` on CPU or if unknown."""

    device: str
    """``"cpu"`` or ``"cuda:N"``."""
    name: str | None = None
    memory_used_mib: float | None = None
    """Memory in use on the whole card (every process), MiB."""
    memory_total_mib: float | None = None
    utilization_percent: float | None = None
    """GPU busy percentage over the driver's last sample period."""
    source: str | None = None
    """Where the numbers came from: ``nvml`` or ``nvidia-smi``."""


def _nvml(index: int) -> GPUInfo | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            return GPUInfo(
                device=f"cuda:{index}",
                name=name.decode() if isinstance(name, bytes) else str(name),
                memory_used_mib=mem.used / 2**20,
                memory_total_mib=mem.total / 2**20,
                utilization_percent=float(util.gpu),
                source="nvml",
            )
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # NVML missing driver/library: fall through to nvidia-smi
        return None


def _nvidia_smi(index: int) -> GPUInfo | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [
                exe,
                f"--id={index}",
                "--query-gpu=name,memory.used,memory.total,utilization.gpu",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        name, used, total, util = (p.strip() for p in out.splitlines()[0].split(","))
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        return None

    def num(v: str) -> float | None:
        try:
            return float(v)
        except ValueError:  # "[N/A]"
            return None

    return GPUInfo(
        device=f"cuda:{index}",
        name=name,
        memory_used_mib=num(used),
        memory_total_mib=num(total),
        utilization_percent=num(util),
        source="nvidia-smi",
    )


def gpu_info(device: str, index: int | None = None) -> GPUInfo:
    """Describe the device the model runs on.

    Args:
        device: the engine's resolved device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        index: CUDA device index (default: the ``N`` of ``"cuda:N"``, else 0).
    Returns:
        :class:`GPUInfo`; on CPU ``device="cpu"`` and every number ``None``. Blocking (≤ 5 s when
        ``nvidia-smi`` hangs): call it off the event loop.
    """
    kind, _, suffix = device.partition(":")
    if kind != "cuda":
        return GPUInfo(device="cpu")
    if index is None:
        index = int(suffix) if suffix.isdigit() else 0
    return _nvml(index) or _nvidia_smi(index) or GPUInfo(device=f"cuda:{index}")
