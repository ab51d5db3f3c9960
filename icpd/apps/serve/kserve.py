"""The Open Inference Protocol (KServe v2, Triton's HTTP/REST API), so ``tritonclient.http`` works.

    GET  /v2                         server metadata (extensions: binary_tensor_data)
    GET  /v2/health/live | ready     open, like /healthz and /readyz
    GET  /v2/models/{name}[/ready]   model metadata: input ``image`` UINT8 [H, W, 3] (or [1, H, W, 3]),
                                     output ``labels`` UINT8 [H, W] (label i + 1 = the i-th class)
    POST /v2/models/{name}/infer     parameters ``classes`` ("ship,plane"; default all) and ``threshold``

Tensors travel as JSON ``data`` or with the binary tensor extension (what tritonclient sends by
default): the JSON header's length in ``Inference-Header-Content-Length``, then each binary
input's ``binary_data_size`` bytes in order; outputs come back the same way when the request asks
(``binary_data`` on the output, or ``binary_data_output``). The labels are those of
``/v1/segment`` for the same pixels and classes: the same scene pipeline.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

import icpd
from icpd.apps.serve.decode import Scene
from icpd.apps.serve.errors import ServeError, error_response
from icpd.apps.serve.handling import read_body, run_job
from icpd.apps.serve.segment import segment_scene

__all__ = ["router"]

router = APIRouter()
HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT, OUTPUT = "image", "labels"


def _model(request: Request, name: str) -> Any:
    """The service, once ``name`` is this server's model (404 naming it otherwise)."""
    service = request.app.state.service
    if name != service.settings.model_name:
        raise ServeError(404, f"model {name!r}: this server serves {service.settings.model_name!r}")
    return service


@router.get("/v2")
async def server_metadata() -> dict[str, Any]:
    return {"name": "icpd", "version": icpd.__version__, "extensions": ["binary_tensor_data"]}


@router.get("/v2/health/live")
async def live() -> dict[str, Any]:
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(request: Request) -> JSONResponse:
    service = request.app.state.service
    if not service.ready:
        return error_response(503, service.why_not_ready(), {"Retry-After": "5"})
    return JSONResponse({"ready": True})


@router.get("/v2/models/{name}")
@router.get("/v2/models/{name}/versions/{version}")
async def model_metadata(name: str, request: Request, version: str = "1") -> dict[str, Any]:
    service = _model(request, name)
    return {"name": name, "versions": ["1"], "platform": "icpd",
            "inputs": [{"name": INPUT, "datatype": "UINT8", "shape": [-1, -1, 3]}],
            "outputs": [{"name": OUTPUT, "datatype": "UINT8", "shape": [-1, -1]}],
            "parameters": {"classes": service.model().class_names}}


@router.get("/v2/models/{name}/ready")
async def model_ready(name: str, request: Request) -> JSONResponse:
    service = _model(request, name)
    if not service.ready:
        return error_response(503, service.why_not_ready(), {"Retry-After": "5"})
    return JSONResponse({"name": name, "ready": True})


@router.post("/v2/models/{name}/infer", response_model=None)
@router.post("/v2/models/{name}/versions/{version}/infer", response_model=None)
async def infer(name: str, request: Request, version: str = "1") -> Response:
    """One image tensor in, its label map out."""
    service = _model(request, name)
    settings = service.settings
    body = await read_body(request, settings.max_body_bytes)
    header, images = _parse_request(body, request.headers.get(HEADER_LENGTH), settings.max_pixels)
    params = header.get("parameters") or {}
    classes = params.get("classes")
    if classes is not None and not isinstance(classes, str):
        raise ServeError(422, f"parameter classes: {classes!r}; give a comma-separated string, e.g. \"ship,plane\"")
    threshold = params.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ServeError(422, f"parameter threshold: {threshold!r}; give a number from 0 to 1")
    predictor = service.select([c.strip() for c in classes.split(",")] if classes else None)
    options = service.scene_options(float(threshold))
    metrics = request.app.state.metrics

    def work(job: Any) -> np.ndarray:
        return np.stack([segment_scene(job, predictor, Scene(img, None, ()), options, metrics).labels
                         for img in images])

    labels = await run_job(service, work)
    unbatched = len(header["inputs"][0]["shape"]) == 3  # [H, W, 3] in: [H, W] out
    return _response(header, name, labels[0] if unbatched else labels)


def _parse_request(body: bytes, header_length: str | None, max_pixels: int) -> tuple[dict[str, Any], np.ndarray]:
    """(the JSON header, images (B, H, W, 3) uint8) of an infer request; ServeError 422/413 when wrong."""
    try:
        size = int(header_length) if header_length is not None else len(body)
        if not 0 < size <= len(body):
            raise ValueError(f"{HEADER_LENGTH} {header_length} outside the body's {len(body)} bytes")
        header = json.loads(body[:size])
        if not isinstance(header, dict):
            raise ValueError("the request is not a JSON object")  # noqa: TRY004 - answered 422 below
    except ValueError as e:
        raise ServeError(422, f"infer request: {e}") from None
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ServeError(422, f"infer request: give exactly one input, {INPUT!r} (UINT8 [H, W, 3])")
    spec = inputs[0]
    shape, dtype = spec.get("shape"), spec.get("datatype")
    if spec.get("name") != INPUT or dtype != "UINT8" or not isinstance(shape, list) or not (
            len(shape) in (3, 4) and all(isinstance(d, int) and d > 0 for d in shape) and shape[-1] == 3):
        raise ServeError(422, f"infer request: input {spec.get('name')!r} {dtype} {shape}; expected {INPUT!r} UINT8 "
                              "[H, W, 3] or [B, H, W, 3] (RGB)")
    h, w = shape[-3], shape[-2]
    if h * w > max_pixels:
        raise ServeError(413, f"input {INPUT!r}: {w}x{h} (WxH) = {h * w:,} pixels, more than this server's limit of "
                              f"{max_pixels:,} (--max-pixels)")
    count = int(np.prod(shape))
    binary = (spec.get("parameters") or {}).get("binary_data_size")
    if binary is not None:
        raw = body[size:]
        if binary != count or len(raw) != count:
            raise ServeError(422, f"input {INPUT!r}: binary_data_size {binary} and {len(raw)} bytes after the header; "
                                  f"a UINT8 {shape} tensor is {count} bytes")
        pixels = np.frombuffer(raw, np.uint8)
    else:
        data = spec.get("data")
        try:
            pixels = np.asarray(data, dtype=np.int64).ravel()
        except (TypeError, ValueError):
            pixels = np.zeros(0, np.int64)
        if pixels.size != count or (pixels.size and (pixels.min() < 0 or pixels.max() > 255)):
            raise ServeError(422, f"input {INPUT!r}: 'data' must hold {count} integers from 0 to 255 for shape {shape}")
        pixels = pixels.astype(np.uint8)
    images = pixels.reshape(shape)
    return header, (images[None] if images.ndim == 3 else images)


def _response(header: dict[str, Any], name: str, labels: np.ndarray) -> Response:
    """The infer response, the labels as binary data when the request asked for it."""
    wanted = header.get("outputs") or [{"name": OUTPUT}]
    unknown = [o.get("name") for o in wanted if o.get("name") != OUTPUT]
    if unknown:
        raise ServeError(422, f"outputs {unknown}: this model has one output, {OUTPUT!r}")
    params = wanted[0].get("parameters") or {}
    binary = bool(params.get("binary_data", (header.get("parameters") or {}).get("binary_data_output", False)))
    out: dict[str, Any] = {"name": OUTPUT, "datatype": "UINT8", "shape": list(labels.shape)}
    doc: dict[str, Any] = {"model_name": name, "model_version": "1", "outputs": [out]}
    if "id" in header:
        doc["id"] = header["id"]
    if not binary:
        out["data"] = labels.ravel().tolist()
        return JSONResponse(doc)
    raw = np.ascontiguousarray(labels).tobytes()
    out["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(doc).encode()
    return Response(head + raw, media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(head))})
