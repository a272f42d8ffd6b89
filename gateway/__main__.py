"""``python -m gateway``: serve the gateway with uvicorn on ``GATEWAY_HOST:GATEWAY_PORT``."""

from __future__ import annotations

from gateway.config import GatewaySettings
from shared.serve import serve


def main() -> None:
    """Run the gateway in the foreground."""
    settings = GatewaySettings()
    serve(
        "gateway",
        "gateway:create_app",
        settings,
        ws_max_size=settings.ws_max_message_bytes,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )


if __name__ == "__main__":
    main()
