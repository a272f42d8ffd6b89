"""Fixtures of the deployment tests: the merged compose configurations (parsed once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import BASE, GPU, merged_config


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deploy")


@pytest.fixture(scope="session")
def base_config(session_tmp: Path) -> dict[str, Any]:
    return merged_config(session_tmp, [BASE])


@pytest.fixture(scope="session")
def gpu_config(session_tmp: Path) -> dict[str, Any]:
    return merged_config(session_tmp, [BASE, GPU])
