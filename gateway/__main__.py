"""``python -m gateway``: serve the gateway with uvicorn on ``GATEWAY_HOST:GATEWAY_PORT``."""

from __future__ import annotations

from gateway.config import GatewaySettings
from shared.serve import serve


def main() -> None:
    """Run the gateway in the foreground."""
    serve("gateway", "gateway:create_app", GatewaySettings())


if __name__ == "__main__":
    main()
