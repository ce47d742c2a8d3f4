"""The API key check: with a key set (MAVIS_API_KEY), every request outside the public paths
must carry `Authorization: Bearer <key>` (the scheme in any case, as RFC 7235 has it), the key
compared in constant time; others get a 401 in OpenAI's error shape.

Public: the playground page and its files (a browser cannot add the header to a page load;
the page holds nothing secret and asks for the key before calling the API), `/health` (load
balancers probe it without credentials), and the API's description, `/openapi.json` and its
page `/docs` (what the README says too; clients and fuzzers read it before they have a key,
and the page's "Authorize" button takes the key for the calls it tries), as vLLM has them.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from mavis.serving.errors import APIError

PUBLIC_PATHS = frozenset({"/", "/health", "/favicon.ico", "/openapi.json", "/docs"})
PUBLIC_PREFIXES = ("/playground/",)


class APIKeyMiddleware:
    """ASGI middleware (pure, so streaming responses and disconnects pass through untouched)."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.expected = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.expected is None or scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == b"authorization"),
                     b"")
        key = bearer_credentials(given)
        if key is not None and hmac.compare_digest(key, self.expected):
            await self.app(scope, receive, send)
            return
        message = ("no API key given; send the header 'Authorization: Bearer <key>'" if not given
                   else "the Authorization header is not 'Bearer <key>'" if key is None
                   else "the API key given is not this server's key")
        error = APIError(401, message, code="invalid_api_key")
        await error.response({"WWW-Authenticate": "Bearer"})(scope, receive, send)


def bearer_credentials(header: bytes) -> bytes | None:
    """The key of an `Authorization: Bearer <key>` header (the scheme in any case, spaces
    around the key ignored); None when the header is not of the Bearer scheme."""
    scheme, _, key = header.strip().partition(b" ")
    return key.strip() if scheme.lower() == b"bearer" and key.strip() else None


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
