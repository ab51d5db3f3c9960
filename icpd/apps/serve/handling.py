"""What the routes share for a request: the body read within its limit, and the work run on a worker
within the request's deadline (the service's bounded queue: 503 when full, 504 past the deadline)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from fastapi import Request

from icpd.apps.serve.errors import ServeError
from icpd.apps.serve.service import DeadlineExceeded, Job, SegmentService

__all__ = ["read_body", "run_job"]


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it passes ``limit`` bytes (the declared length first)."""
    declared = request.headers.get("content-length")
    too_big = (f"the body is larger than this server's limit of {limit / (1 << 20):g} MiB (--max-body-mb); "
               "send a smaller image or tiles of it")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ServeError(413, too_big)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServeError(413, too_big)
        chunks.append(chunk)
    if not size:
        raise ServeError(422, "the body is empty: send the image file's bytes as the body")
    return b"".join(chunks)


async def run_job(service: SegmentService, fn: Callable[[Job], Any]) -> Any:
    """Run ``fn`` on a worker within the request's deadline: 503 when the queue is full, 504 past it."""
    settings = service.settings
    job = service.submit(fn, time.monotonic() + settings.deadline)
    try:
        return await asyncio.wait_for(asyncio.wrap_future(job.future), settings.deadline)
    except (TimeoutError, asyncio.TimeoutError, DeadlineExceeded):
        job.future.cancel()  # still waiting: the worker skips it; running: it stops at its next tile batch
        waited = (job.started or time.monotonic()) - job.queued
        raise ServeError(504, f"deadline of {settings.deadline:g} s passed ({waited:.1f} s of it waiting for a worker);"
                              " send a smaller image, or start the server with a longer --deadline or more --workers"
                         ) from None

