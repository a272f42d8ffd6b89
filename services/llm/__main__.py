"""``python -m services.llm``: serve the CPU LLM stand-in with uvicorn on ``LLM_HOST:LLM_PORT``."""

from __future__ import annotations

from services.llm.config import LLMSettings
from shared.serve import serve


def main() -> None:
    """Run the service in the foreground."""
    serve("llm", "services.llm:create_app", LLMSettings())


if __name__ == "__main__":
    main()
