"""``python -m services.llm``: serve the CPU LLM stand-in with uvicorn on ``LLM_HOST:LLM_PORT``."""

from __future__ import annotations

from services.llm.config import LLMSettings
from shared.serve import serve
from shared.threads import lower_cpu_priority


def main() -> None:
    """Run the service in the foreground, at the configured CPU priority (``LLM_CPU_NICE``)."""
    settings = LLMSettings()
    lower_cpu_priority(settings.cpu_nice)
    serve("llm", "services.llm:create_app", settings)


if __name__ == "__main__":
    main()
