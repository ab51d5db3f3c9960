"""One error shape for every endpoint: ``{"error": "<one sentence: what, the value, the fix>"}``.

The same body the Open Inference Protocol (KServe v2) uses for its errors, so Triton's client shows
our message. Statuses: 401 no or wrong token, 404 unknown class / support / model, 406 an Accept
we cannot give, 413 body or pixels over the limit, 415 not PNG/JPEG/TIFF, 422 bad parameters or
pixels the decoding rules refuse, 503 not ready or queue full (with Retry-After), 504 deadline.
A bug keeps its traceback in the server's log and answers 500 with a generic message.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["ServeError", "error_response", "install_error_handlers"]

log = logging.getLogger("icpd.serve")


class ServeError(Exception):
    """An answer other than 2xx: ``status``, one-line ``message``, extra ``headers`` (e.g. Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    """FastAPI's list of problems as one sentence naming each parameter and what was wrong."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body", "header"))
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], (dict, bytes)) else ""
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}{got}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Every error (ours, Starlette's 404/405, FastAPI's parameter checks, bugs) as one JSON message."""

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"{request.url.path}: no such endpoint; the API is listed in the README (Serving)"
        elif exc.status_code == 405:
            message = f"{request.method} {request.url.path}: method not allowed here"
        return error_response(exc.status_code, message, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); the server log has the traceback")
