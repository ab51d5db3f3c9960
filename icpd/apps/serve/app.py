"""``create_app(settings) -> FastAPI``: the HTTP face of ``icpd serve`` (uvicorn runs it; Ray Serve
wraps the same app with ``serve.ingress``).

Routes (README "Serving"): ``/healthz``, ``/readyz`` (open), ``/v1/model``, ``/v1/supports``
(GET, PUT, DELETE), ``/v1/segment``, ``/metrics``, the Open Inference Protocol under ``/v2``
(:mod:`icpd.apps.serve.kserve`), and the page at ``/`` (static files shipped in the package, open:
the page asks for the token and sends it). The model loads in the app's lifespan, in a thread, so
``/healthz`` answers at once and ``/readyz`` says 503 until the model and one support set are in.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from icpd.apps.serve.decode import check_pixels, sniff
from icpd.apps.serve.errors import ServeError, error_response, install_error_handlers
from icpd.apps.serve.handling import read_body, run_job
from icpd.apps.serve.kserve import router as kserve_router
from icpd.apps.serve.metrics import CONTENT_TYPE_LATEST, ServeMetrics
from icpd.apps.serve.segment import label_png, result_json, segment_body
from icpd.apps.serve.service import Job, SegmentService
from icpd.apps.serve.settings import ServeSettings
from icpd.apps.serve.supports import router as supports_router

if TYPE_CHECKING:
    from icpd.runtime.predictor import Predictor
    from icpd.runtime.tiling import SceneOptions

__all__ = ["create_app"]

STATIC = Path(__file__).with_name("static")
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
SEGMENTING = frozenset({"/v1/segment", "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"})


def _protected(path: str) -> bool:
    """Everything of the API needs the token; health, readiness and the page's static files do not."""
    return path not in OPEN_PATHS and (path.startswith(("/v1/", "/v2")) or path == "/metrics")


def create_app(settings: ServeSettings) -> FastAPI:
    """The service's FastAPI application; the model is loaded when the app starts (its lifespan)."""
    metrics = ServeMetrics()
    service = SegmentService(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        await asyncio.to_thread(service.stop)

    app = FastAPI(title="icpd serve", summary="Few-shot segmentation of remote-sensing scenes (ICPD-Net)",
                  lifespan=lifespan, docs_url="/v1/docs", redoc_url=None, openapi_url="/v1/openapi.json")
    app.state.settings, app.state.service, app.state.metrics = settings, service, metrics
    install_error_handlers(app)

    @app.middleware("http")
    async def auth_and_count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.monotonic()
        if settings.token is not None and _protected(request.url.path) and not _authorized(request, settings.token):
            response: Response = error_response(401, "missing or wrong token: send the header 'Authorization: Bearer "
                                                     "<token>' (the token `icpd serve` was started with)",
                                                {"WWW-Authenticate": "Bearer"})
            endpoint = "unauthenticated"  # refused before routing; never the raw path (unbounded label values)
        else:
            response = await call_next(request)
            endpoint = getattr(request.scope.get("route"), "path", None) or "unmatched"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        if endpoint in SEGMENTING:
            metrics.stage.labels("total").observe(time.monotonic() - start)
        return response

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive (the process answers), whether or not the model is loaded."""
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """200 once the model is loaded and at least one support set; 503 with the reason before."""
        if not service.ready:
            return error_response(503, service.why_not_ready(), {"Retry-After": "5"})
        return JSONResponse({"status": "ready", "classes": service.model().class_names})

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        """Preset, fingerprint, precision, backend and the loaded classes."""
        p = service.model()
        return {"model": str(settings.model), "preset": p.preset.name, "fingerprint": p.fingerprint,
                "precision": p.model_dir.meta.get("precision", "fp32"), "backend": p.backend_name,
                "device": settings.device, "input_size": p.preset.image_size, "classes": p.class_names,
                "tile": service.options.tile if service.options else None, "overlap": settings.overlap,
                "batch": settings.batch}

    app.include_router(supports_router)

    @app.post("/v1/segment", response_model=None)
    async def segment(request: Request,
                      classes: str | None = Query(None, description="Comma-separated classes (default: all loaded); "
                                                                    "label i + 1 is the i-th"),
                      threshold: float = Query(0.5, ge=0.0, le=1.0, description="Foreground probability a class "
                                                                                "needs to win a pixel (>=)"),
                      polygons: bool = Query(False, description="JSON: add the masks as GeoJSON polygons"),
                      bands: str | None = Query(None, description="Three 1-based band numbers as R,G,B, e.g. 4,3,2"),
                      ) -> Response:
        """The image bytes as the body -> the label PNG (Accept: image/png) or counts as JSON."""
        want = _negotiate(request.headers.get("accept"))
        names = [c.strip() for c in classes.split(",")] if classes is not None else None
        predictor = service.select(names)
        band_numbers = _parse_bands(bands)
        data = await read_body(request, settings.max_body_bytes)
        suffix = sniff(data, request.headers.get("content-type"))
        check_pixels(data, suffix, settings.max_pixels)
        options = service.scene_options(threshold)
        result = await run_job(service, lambda job: _answer(job, predictor, data, suffix, band_numbers, options,
                                                            want, polygons))
        return result

    def _answer(job: Job, predictor: Predictor, data: bytes, suffix: str, bands: tuple[int, int, int] | None,
                options: SceneOptions, want: str, polygons: bool) -> Response:
        result = segment_body(job, predictor, data, suffix, bands, options, metrics)
        start = time.monotonic()
        if want == "png":
            body, media = label_png(result), "image/png"
            response: Response = Response(body, media_type=media, headers={
                "X-Classes": ",".join(result.class_names), "X-Notes": str(len(result.notes))})
        else:
            result.timings["queue"] = (job.started or job.queued) - job.queued
            response = JSONResponse(result_json(result, polygons))
        metrics.stage.labels("encode").observe(time.monotonic() - start)
        return response

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text: requests by endpoint and status, stage latencies, queue depth, batch sizes."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(kserve_router)
    _page_routes(app)
    return app


def _page_routes(app: FastAPI) -> None:
    """GET routes for the page's files (``/`` is index.html), listed when the app is made. Routes, not a
    catch-all mount, so that a wrong method on an API path stays 405 and an unknown path 404."""
    files = sorted(p for p in STATIC.rglob("*") if p.is_file()) if STATIC.is_dir() else []
    for path in files:
        url = "/" + path.relative_to(STATIC).as_posix()
        page_file = _file_handler(path)
        app.add_api_route(url, page_file, methods=["GET"], include_in_schema=False)
        if path.name == "index.html":
            app.add_api_route(url[: -len("index.html")], page_file, methods=["GET"], include_in_schema=False)


def _file_handler(path: Path) -> Callable[[], Awaitable[FileResponse]]:
    """A handler without parameters (nothing of the request chooses the file) that sends ``path``."""

    async def page_file() -> FileResponse:
        return FileResponse(path)

    return page_file


def _authorized(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # constant time: the comparison takes as long for a nearly right token as for a wrong one
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _negotiate(accept: str | None) -> str:
    """"png" or "json" from an Accept header (none or */*: json); ServeError 406 otherwise."""
    if not accept:
        return "json"
    ranked = []
    for i, part in enumerate(accept.split(",")):
        kind, *params = (p.strip() for p in part.split(";"))
        q = next((float(p[2:]) for p in params if p.startswith("q=") and p[2:].replace(".", "", 1).isdigit()), 1.0)
        ranked.append((-q, i, kind.lower()))
    for q, _, kind in sorted(ranked):
        if q < 0 and kind in ("application/json", "*/*", "application/*"):
            return "json"
        if q < 0 and kind in ("image/png", "image/*"):
            return "png"
    raise ServeError(406, f"Accept {accept!r}: /v1/segment answers image/png (the label map) or application/json "
                          "(counts, notes, polygons)")


def _parse_bands(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    from icpd.io import ImageError, parse_bands

    try:
        return parse_bands(text)
    except ImageError as e:
        raise ServeError(422, str(e)) from None
