"""Shared fixtures: paths to the real model artifacts fetched by `make models`."""

from pathlib import Path

import pytest

from shared.config import models_dir


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make models` (make setup does)")
    return path


@pytest.fixture(scope="session")
def arctic_wav() -> Path:
    """CMU ARCTIC arctic_a0009.wav, real 16 kHz speech."""
    return _need(models_dir() / "audio" / "arctic_a0009.wav")


@pytest.fixture(scope="session")
def arctic_text(arctic_wav: Path) -> str:
    """Its reference transcript."""
    return arctic_wav.with_suffix(".txt").read_text().strip()


@pytest.fixture(scope="session")
def caller_wav() -> Path:
    """The synthetic caller (Kokoro am_michael) asking about a leaking sink."""
    return _need(models_dir() / "audio" / "caller_leak.wav")
