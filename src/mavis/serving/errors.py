"""Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, so that clients
written for OpenAI (the official `openai` package raises `BadRequestError`, `RateLimitError`,
...) read them as they read OpenAI's."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
          405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
          500: "server_error", 503: "server_error"}


class APIError(Exception):
    """An error answered over HTTP: its status, a message saying what is wrong and how to fix
    it, the request field at fault (`param`) and a short machine-readable `code`."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind or _TYPES.get(status, "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400: the request asks for something this server cannot do as asked."""
    return APIError(400, message, param=param, code=code)


def client_gone() -> APIError:
    """A 499 (nginx's "client closed request"): the client went away before its answer; nobody
    reads it, but the metrics count it as what it was rather than a 500."""
    return APIError(499, "the client closed the request", code="client_closed_request")
