"""``icpd serve --ray``: the same FastAPI app (:func:`icpd.apps.serve.app.create_app`) as a Ray Serve
deployment with ``replicas`` replicas behind Ray Serve's HTTP proxy.

    run_ray_serve(settings, address=None, replicas=2)   # blocks until SIGTERM / SIGINT

* Each replica builds its own app from the (frozen, picklable) ``ServeSettings`` when it starts
  (``__serve_build_asgi_app__``): the model loads once per replica, in the app's lifespan, as in
  the single-process server, so the answers are the same bytes (tested). A replica joins the
  routing once its model is loaded.
* Ray Serve's proxy listens on ``settings.host:settings.port`` and spreads requests over the
  replicas. A replica that dies (its process killed, its node lost) is replaced by the Serve
  controller; the requests that were on it fail with Ray Serve's 500, every other request is
  answered (tested by killing a replica's process under load).
* Local Ray (``address`` None or ``"local"``) or a cluster's address (``auto``, ``ray://HOST:10001``),
  as ``icpd infer --ray`` takes it; every node needs the model dir and support files at the same
  paths (they are made absolute). With several replicas the classes are fixed at start
  (``--support``): a PUT/DELETE of ``/v1/supports`` would change one replica only, so it is refused.
* No ``@serve.batch``: batching concurrent requests into one ``Predictor.predict`` call was
  measured (``scripts/serve_batching.py``; README "Serving on Ray and measured numbers"): it
  saves some time per image on ONNX Runtime CPU, but a batched call's labels differ from a single
  call's at a few pixels (matrix products summed in another order), so an answer would depend on
  which other requests shared its batch and would no longer be the bytes ``icpd infer`` writes.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icpd.cluster import start_ray

if TYPE_CHECKING:
    from icpd.apps.serve.settings import ServeSettings

__all__ = ["APP_NAME", "DEPLOYMENT_NAME", "RAY_SERVE_HINT", "run_ray_serve"]

RAY_SERVE_HINT = "pip install 'icpd[serve,ray]' 'ray[serve]'"
APP_NAME = "icpd"  # the Serve application (one per cluster: a second `icpd serve --ray` replaces it)
DEPLOYMENT_NAME = "icpd-serve"
# Serve logs a line per request (and INFO about every replica) to the driver's terminal by default;
# the app's own /metrics count requests, and warnings (a replica that died) still show
QUIET_LOGS = {"log_level": "WARNING", "enable_access_log": False}


def _import_serve():  # -> (ray, ray.serve)
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise ImportError(f"--ray needs Ray Serve, which is not installed: {RAY_SERVE_HINT}") from exc
    return ray, serve


def replica_cpus(ray: Any, replicas: int, threads: int) -> float:
    """Logical CPUs each replica asks for: its ONNX Runtime threads, or a share where ``replicas``
    would exceed the cluster (Serve would otherwise wait forever for resources that never come)."""
    total = float(ray.cluster_resources().get("CPU", 1.0))
    return min(float(threads), total / replicas)


def replica_settings(settings: ServeSettings) -> ServeSettings:
    """``settings`` as every replica gets them: absolute paths (a replica's worker has its own working
    directory, and on another node the same path must name the same files) and, as ``icpd infer
    --ray`` does, 1 backend thread per replica unless ``--threads`` says otherwise (N replicas with
    every core each would oversubscribe the machine)."""
    def absolute(p: Path | None) -> Path | None:
        return None if p is None else p.expanduser().resolve()

    return dataclasses.replace(settings, model=absolute(settings.model),
                               supports=tuple(absolute(p) for p in settings.supports),
                               engine_dir=absolute(settings.engine_dir),
                               class_embeddings=absolute(settings.class_embeddings), threads=settings.threads or 1)


def deployment(serve: Any, settings: ServeSettings, replicas: int, cpus: float) -> Any:
    """The bound Serve application: ``replicas`` replicas, each ``create_app(settings)``."""

    @serve.deployment(name=DEPLOYMENT_NAME, num_replicas=replicas, ray_actor_options={"num_cpus": cpus},
                      # a replica takes what its own workers and queue take (past that the app answers
                      # 503 + Retry-After itself); Serve's router queue in front is bounded too: past
                      # it the proxy answers 503 + Retry-After, never unbounded memory
                      max_ongoing_requests=settings.workers + settings.queue + 1,
                      max_queued_requests=max(1, settings.queue) * replicas,
                      graceful_shutdown_timeout_s=settings.drain, logging_config=QUIET_LOGS)
    @serve.ingress()
    class IcpdServe:
        def __init__(self, settings: ServeSettings, replicas: int) -> None:
            self.settings, self.replicas = settings, replicas

        def __serve_build_asgi_app__(self):
            return replica_app(self.settings, self.replicas)

    return IcpdServe.bind(settings, replicas)


def replica_app(settings: ServeSettings, replicas: int) -> Any:
    """``create_app(settings)`` whose startup returns only once the model is loaded, and whose classes
    are fixed at start when there are several replicas.

    Loading: the single-process server loads in the background so that ``/healthz`` answers at once, and a
    client waits for ``/readyz``. Ray Serve routes requests to a replica as soon as its startup
    returns: a restarted replica would answer its first requests 503 (still loading) while the
    others could answer them. Waiting here keeps a replica out of the routing until it can serve.
    A model that fails to load fails the replica's start, with the reason (Ray reports it).

    Classes: a support set PUT (or DELETE) reaches the one replica that takes the request, so the
    replicas would then answer the same request differently; with more than one replica both are
    refused (409) with what to do instead. Authentication still comes first (401)."""
    import asyncio
    from contextlib import asynccontextmanager

    from icpd.apps.serve.app import create_app

    app = create_app(settings)
    service, inner = app.state.service, app.router.lifespan_context

    @asynccontextmanager
    async def loaded_first(a: Any):  # -> AsyncIterator[Any]
        async with inner(a) as state:
            await asyncio.to_thread(service.loaded.wait)
            if service.error:
                raise RuntimeError(f"icpd serve replica: the model did not load: {service.error}")
            yield state

    app.router.lifespan_context = loaded_first
    if replicas > 1:
        from fastapi.routing import APIRoute

        from icpd.apps.serve.errors import ServeError

        async def classes_fixed(name: str) -> None:
            raise ServeError(409, f"PUT/DELETE /v1/supports/{name}: this service runs {replicas} Ray Serve "
                                  "replicas, and a support set changed here would change one of them only; give the "
                                  "classes at start (--support NAME.support), or run one replica (--replicas 1)")

        # first in the routing table: matched before the app's own PUT/DELETE of the same path
        app.router.routes.insert(0, APIRoute("/v1/supports/{name}", classes_fixed, methods=["PUT", "DELETE"]))
    return app


def run_ray_serve(settings: ServeSettings, address: str | None, replicas: int) -> None:
    """Serve ``create_app(settings)`` on Ray Serve with ``replicas`` replicas on ``settings.host:port``
    until SIGTERM or SIGINT; then the application is deleted (in-flight requests finish within the
    graceful-shutdown bound), Serve stops, and a Ray this call started is shut down."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        from icpd.errors import ParamError, arg

        raise ParamError(f"{arg('replicas', replicas)}: give a whole number of replicas, at least 1")
    if replicas > 1 and not settings.supports:  # a PUT would reach one replica: refused, never ready
        from icpd.errors import ParamError, arg

        raise ParamError(f"{arg('replicas', replicas)} with no {arg('supports')}: several replicas take their "
                         f"classes at start only; give {arg('supports', 'NAME.support')} (once per class)")
    ray, serve = _import_serve()
    settings = replica_settings(settings)
    stop = threading.Event()
    started = start_ray(ray, address, replicas, command="icpd serve")
    # after ray.init, which sets a SIGTERM handler of its own (sys.exit) in the driver
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port}, logging_config=QUIET_LOGS)
        app = deployment(serve, settings, replicas, replica_cpus(ray, replicas, settings.threads or 1))
        serve.run(app, name=APP_NAME, route_prefix="/")
        print(f"icpd serve: {replicas} Ray Serve replica(s) on http://{settings.host}:{settings.port} "
              f"(Ray: {address or 'local'})", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        try:
            serve.shutdown()
        finally:
            if started:
                ray.shutdown()
            for s, handler in previous.items():
                signal.signal(s, handler)
