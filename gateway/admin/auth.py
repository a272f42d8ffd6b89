"""Admin authentication: one API key (``GATEWAY_ADMIN__API_KEY``) as a bearer token or ``X-Admin-Key``.

Both schemes appear in the OpenAPI document, so ``/docs``' *Authorize* button works. Without a
configured key every admin request is refused (401): the admin API is off until a key is set.
The database session of a request is :data:`gateway.admin.deps.Tx`.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from gateway.config import GatewaySettings

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <GATEWAY_ADMIN__API_KEY>`")
key_header = APIKeyHeader(name="X-Admin-Key", auto_error=False, description="`X-Admin-Key: <GATEWAY_ADMIN__API_KEY>`")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": 'Bearer realm="switchboard"'})


async def require_admin(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Security(bearer),
    api_key: str | None = Security(key_header),
) -> None:
    """FastAPI dependency: pass with the right key, else 401 (constant-time comparison).

    Raises:
        HTTPException: 401 without a key, with a wrong key, or when no key is configured.
    """
    settings: GatewaySettings = request.app.state.settings
    expected = settings.admin.api_key.get_secret_value()
    if not expected:
        raise _unauthorized("admin API disabled: set GATEWAY_ADMIN__API_KEY (or GATEWAY_ADMIN_API_KEY)")
    given = credentials.credentials if credentials is not None else api_key
    if not given:
        raise _unauthorized("admin API key required (Authorization: Bearer <key> or X-Admin-Key)")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise _unauthorized("invalid admin API key")
