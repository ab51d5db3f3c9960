"""``/v1/supports``: list, add (a ``.support`` file, or images and masks encoded on the server), delete.

``PUT /v1/supports/{name}`` takes either a support cache as the body (``icpd cache-support``'s file,
checked against the model's fingerprint exactly as ``--support`` is) or a ``multipart/form-data``
form of ``image`` and ``mask`` parts (one mask per image, same order; the rules of ``icpd
cache-support --image --mask``) plus an optional ``target_class`` (the embeddings row, default
``name``), encoded with the class embeddings the server was started with (``--class-embeddings``).
Everything stays in memory: the form is parsed from the body's bytes, never spooled to disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from icpd.apps.serve.errors import ServeError
from icpd.apps.serve.handling import read_body, run_job

__all__ = ["parse_form", "router"]

router = APIRouter()
MAX_SHOTS_FORM = 64  # parts in one form: more shots than any model takes


def _describe(support: Any) -> dict[str, Any]:
    return {"name": support.class_name, "shots": support.shots, "fingerprint": support.fingerprint,
            "notes": support.notes, "created": support.meta.get("created")}


@router.get("/v1/supports")
async def list_supports(request: Request) -> dict[str, Any]:
    """The loaded classes, in label order (label i + 1 for the i-th when no classes= is given)."""
    predictor = request.app.state.service.model()
    return {"supports": [_describe(s) for s in predictor.supports]}


@router.put("/v1/supports/{name:path}")  # :path: a name with "/" is refused (422), not unrouted
async def put_support(name: str, request: Request) -> JSONResponse:
    """Add or replace class ``name``: 201 when added, 200 when it replaced one."""
    from icpd.apps.serve.service import check_name

    service = request.app.state.service
    check_name(name)
    predictor = service.model()
    data = await read_body(request, service.settings.max_body_bytes)
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/form-data"):
        parts = parse_form(data, content_type)
        # on a worker, like a segmentation: the same bounded queue (503) and deadline (504)
        support = await run_job(service, lambda job: _encode(service, predictor, name, parts))
    else:
        from icpd.artifacts.support_cache import SupportSet

        try:
            support = SupportSet.loads(data, predictor.fingerprint, source=f"support {name!r} (request body)")
        except ValueError as e:
            raise ServeError(422, str(e)) from None
    try:
        replaced = service.put_support(name, support)
    except ValueError as e:  # the Predictor's checks (shots, inputs): its words
        raise ServeError(422, f"support {name!r}: {e}") from None
    return JSONResponse({**_describe(service.model().select([name]).supports[0]), "replaced": replaced},
                        status_code=200 if replaced else 201)


@router.delete("/v1/supports/{name:path}")
async def delete_support(name: str, request: Request) -> dict[str, Any]:
    """Unload class ``name`` (404 listing the loaded ones when it is not loaded)."""
    service = request.app.state.service
    service.delete_support(name)
    return {"deleted": name, "classes": service.model().class_names}


def parse_form(data: bytes, content_type: str) -> dict[str, list[tuple[str, bytes]]]:
    """A multipart/form-data body -> {field: [(file name, bytes), ...]}, in memory (422 if malformed)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ServeError(422, "multipart/form-data without a boundary; let the client build the form (curl -F)")
    parts: list[dict[str, Any]] = []
    header: dict[bytes, bytes] = {}
    field: list[bytes] = []
    value: list[bytes] = []

    def on_part_begin() -> None:
        header.clear()
        parts.append({"chunks": []})

    def on_header_end() -> None:
        header[b"".join(field).lower()] = b"".join(value)
        field.clear()
        value.clear()

    def on_headers_finished() -> None:
        _, disp = parse_options_header(header.get(b"content-disposition", b""))
        parts[-1]["name"] = disp.get(b"name", b"").decode("utf-8", "replace")
        parts[-1]["filename"] = disp.get(b"filename", b"").decode("utf-8", "replace")

    callbacks = {"on_part_begin": on_part_begin, "on_header_end": on_header_end,
                 "on_headers_finished": on_headers_finished,
                 "on_header_field": lambda d, a, b: field.append(d[a:b]),
                 "on_header_value": lambda d, a, b: value.append(d[a:b]),
                 "on_part_data": lambda d, a, b: parts[-1]["chunks"].append(d[a:b])}
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        parser.write(data)
        parser.finalize()
    except Exception as e:  # noqa: BLE001 - python-multipart's parse errors: a malformed form
        raise ServeError(422, f"the multipart form could not be parsed ({e}); "
                              "let the client build it (curl -F)") from None
    if len(parts) > 2 * MAX_SHOTS_FORM + 1:
        raise ServeError(422, f"the form has {len(parts)} parts; at most {MAX_SHOTS_FORM} image/mask pairs")
    form: dict[str, list[tuple[str, bytes]]] = {}
    for p in parts:
        form.setdefault(p.get("name", ""), []).append((p.get("filename", ""), b"".join(p["chunks"])))
    return form


def _encode(service: Any, predictor: Any, name: str, form: dict[str, list[tuple[str, bytes]]]) -> Any:
    """Images and masks of a form -> the SupportSet ``icpd cache-support`` makes of the same files."""
    from icpd.io import ImageError, read_image, read_mask

    if service.embeddings is None:
        raise ServeError(422, "this server was started without --class-embeddings, so it cannot encode images; "
                              "PUT a .support file made by `icpd cache-support`, or restart with --class-embeddings")
    images, masks = form.get("image", []), form.get("mask", [])
    unknown = sorted(set(form) - {"image", "mask", "target_class"})
    if unknown or not images or len(images) != len(masks):
        raise ServeError(422, f"the form needs one 'mask' part per 'image' part, in the same order (got {len(images)} "
                              f"image(s), {len(masks)} mask(s)"
                              f"{', and unknown fields ' + ', '.join(unknown) if unknown else ''})")
    target = form.get("target_class", [("", name.encode())])[0][1].decode("utf-8", "replace").strip() or name
    limit = service.settings.max_pixels
    try:
        rasters = [read_image(_part(f"image{k + 1}", fn, b, limit), data=b) for k, (fn, b) in enumerate(images)]
        mask_arrays = [read_mask(_part(f"mask{k + 1}", fn, b, limit), like=r, data=b)
                       for k, ((fn, b), r) in enumerate(zip(masks, rasters))]
        emb = service.embeddings.for_target(target)
        support = predictor.encode_support(rasters, mask_arrays, name, emb)
    except (ImageError, ValueError, KeyError) as e:
        raise ServeError(422, f"support {name!r}: {e}") from None
    support.meta.update({"images": [fn for fn, _ in images], "masks": [fn for fn, _ in masks]})
    return support


def _part(label: str, filename: str, data: bytes, max_pixels: int) -> Path:
    """A form part's name for the readers' messages (``image1-s0.png``; never opened), once its bytes are
    a PNG, JPEG or TIFF (415) within the pixel limit (413)."""
    from icpd.apps.serve.decode import check_pixels, sniff

    suffix = sniff(data, None)
    check_pixels(data, suffix, max_pixels)
    return Path(f"{label}-{_safe(filename)}{suffix}")


def _safe(filename: str) -> str:
    """A client's file name as a message label only (never a path): its stem, safe characters only."""
    stem = Path(filename.replace("\\", "/")).stem
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)[:40] or "part"
