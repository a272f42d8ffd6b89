"""What ``GET /gpu`` reports: device, memory used/total (MiB) and utilisation (%).

Reads NVML through ``pynvml`` (package ``nvidia-ml-py``) when it is installed, else asks
``nvidia-smi --query-gpu`` (shipped with the NVIDIA driver); on CPU, or when neither answers,
the numbers are ``None``. Nothing here needs a GPU library at import.
"""

from __future__ import annotations

import shutil
import subprocess

from services.stt.schemas import GPUInfo


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


def gpu_info(device: str, index: int = 0) -> GPUInfo:
    """Describe the device the model runs on.

    Args:
        device: the engine's resolved device, ``"cpu"`` or ``"cuda"``.
        index: CUDA device index.
    Returns:
        :class:`GPUInfo`; on CPU ``device="cpu"`` and every number ``None``. Blocking (≤ 5 s when
        ``nvidia-smi`` hangs): call it off the event loop.
    """
    if device != "cuda":
        return GPUInfo(device="cpu")
    return _nvml(index) or _nvidia_smi(index) or GPUInfo(device=f"cuda:{index}")
