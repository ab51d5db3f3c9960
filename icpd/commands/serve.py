"""``icpd serve``: the segmentation service (FastAPI app run by uvicorn, or on Ray Serve with --ray)."""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from icpd.commands.common import (
    BackendOpt,
    DeviceOpt,
    EnginesOpt,
    ModelDirOpt,
    OverlapOpt,
    QuietOpt,
    ThreadsOpt,
    TileBatchOpt,
    TileOpt,
    console,
    fail,
    finite_number,
)
from icpd.config import Backend

if TYPE_CHECKING:
    from icpd.apps.serve.settings import ServeSettings


def serve_cmd(
    model: ModelDirOpt,
    support: Annotated[list[Path] | None, typer.Option("--support", "-s",
                                                       help="Support cache of one class (`icpd cache-support`), "
                                                            "loaded at start; repeat per class. More can be PUT "
                                                            "at /v1/supports/{name}.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but loopback "
                                           "needs --token (or --insecure).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8080,
    token: Annotated[str | None, typer.Option(envvar="ICPD_SERVE_TOKEN", show_envvar=True,
                                              help="Bearer token every endpoint but /healthz, /readyz and the page "
                                                   "needs (Authorization: Bearer TOKEN). Prefer the environment "
                                                   "variable: a command line is visible to other users.")] = None,
    backend: BackendOpt = Backend.ORT,
    engines: EnginesOpt = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Requests segmented at once (threads "
                                                             "over the one loaded model).")] = 1,
    queue: Annotated[int, typer.Option(min=0, max=100_000, help="Requests that may wait for a worker; more "
                                                                "are answered 503 with Retry-After.")] = 8,
    deadline: Annotated[float, typer.Option(min=0.001, callback=finite_number,
                                            help="Seconds a request may take, waiting included (504 past it).")] = 60.0,
    max_body_mb: Annotated[float, typer.Option(min=0.001, callback=finite_number,
                                               help="Largest request body, MiB (413 above).")] = 64.0,
    max_pixels: Annotated[int, typer.Option(min=1, help="Largest image, in pixels, read from its header "
                                                        "before decoding (413 above).")] = 64_000_000,
    tile: TileOpt = None,
    overlap: OverlapOpt = 32,
    batch: TileBatchOpt = 8,
    class_embeddings: Annotated[Path | None, typer.Option(help="Class embeddings (.safetensors) to encode supports PUT "
                                                               "as images and masks.",
                                                          show_default=False)] = None,
    ray: Annotated[str | None, typer.Option("--ray", help="Run on Ray Serve: `--ray` alone starts a local Ray, "
                                                          "`--ray auto` or `--ray ray://HOST:10001` joins a cluster.",
                                            show_default=False)] = None,
    replicas: Annotated[int, typer.Option(min=1, max=1024, help="With --ray: replicas of the service.")] = 1,
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow a non-loopback --host without a token.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Serve segmentation over HTTP: /v1/segment, /v1/supports, /metrics, Open Inference Protocol (/v2), a page at /."""
    from icpd.apps.serve.settings import is_loopback

    if not is_loopback(host) and token is None and not insecure:
        fail(f"--host {host}: not a loopback address, and no token is set: anyone who reaches it could use the "
             "service; set ICPD_SERVE_TOKEN (or --token), or pass --insecure on a trusted network")
    if ray is None and replicas != 1:
        fail(f"--replicas {replicas} goes with --ray; one process serves with --workers")
    settings = _settings(model, support or [], host, port, token, backend, engines, device, threads, workers, queue,
                         deadline, max_body_mb, max_pixels, tile, overlap, batch, class_embeddings)
    if ray is not None:
        from icpd.apps.serve.ray_serve import run_ray_serve

        try:
            run_ray_serve(settings, None if ray == "local" else ray, replicas)
        except (ValueError, ImportError) as e:
            fail(e)
        return
    _run_uvicorn(settings, quiet)


def _settings(model: Path, supports: list[Path], host: str, port: int, token: str | None, backend: Backend,
              engines: Path | None, device: str, threads: int | None, workers: int, queue: int, deadline: float,
              max_body_mb: float, max_pixels: int, tile: int | None, overlap: int, batch: int,
              class_embeddings: Path | None) -> ServeSettings:
    """The settings, with everything checked that can be before a socket is opened (one error line each)."""
    from icpd.apps.serve.errors import ServeError
    from icpd.apps.serve.service import check_name
    from icpd.apps.serve.settings import ServeSettings
    from icpd.artifacts.model_dir import ModelDir
    from icpd.artifacts.support_cache import SupportSet
    from icpd.runtime.tiling import SceneOptions

    try:
        settings = ServeSettings(model=model, supports=tuple(supports), backend=backend.value, device=device,
                                 engine_dir=engines, class_embeddings=class_embeddings, threads=threads,
                                 workers=workers, queue=queue, deadline=deadline, max_body_mb=max_body_mb,
                                 max_pixels=max_pixels, tile=tile, overlap=overlap, batch=batch, token=token,
                                 host=host, port=port)
    except ValueError as e:  # a ParamError: printed with this command's flags
        fail(e)
    if backend is Backend.TRT and engines is None:
        fail("--backend trt: pass --engines ENGINE_DIR (from `icpd build`)")
    if not model.is_dir():
        fail(f"--model {model}: not a directory; create one with `icpd export --out {model}`")
    try:
        md = ModelDir.open(model)
        SceneOptions(tile=tile, overlap=overlap, batch=batch).for_model(md.preset.image_size)
    except ValueError as e:
        fail(e)
    seen: dict[str, Path] = {}
    for path in supports:
        try:
            name = check_name(SupportSet.load(path, md.fingerprint).class_name, "class name")
        except ValueError as e:
            fail(f"--support {path}: {e}")
        except ServeError as e:
            fail(f"--support {path}: {e.message}; PUT it under such a name instead: curl -X PUT --data-binary "
                 f"@{path} http://HOST:PORT/v1/supports/NAME")
        if name.casefold() in seen:
            fail(f"--support {path}: class {name!r} is given twice (also "
                 f"{seen[name.casefold()]}); give each class once")
        seen[name.casefold()] = path
    if class_embeddings is not None and not class_embeddings.is_file():
        fail(f"--class-embeddings {class_embeddings}: file not found; pass the .safetensors of `icpd embed-text`")
    return settings


def _run_uvicorn(settings: ServeSettings, quiet: bool) -> None:
    """uvicorn on the app until SIGTERM/SIGINT: then it stops accepting, finishes the requests in flight
    (up to ``settings.drain`` s), the workers end, and the command returns (exit 0)."""
    import uvicorn

    from icpd.apps.serve.app import create_app

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as e:  # bound here, before the model loads: the error names the option
        sock.close()
        fail(f"--host {settings.host} --port {settings.port}: cannot listen there ({e.strerror}); choose another "
             "port, or stop the program using it")
    config = uvicorn.Config(create_app(settings), log_level="warning" if quiet else "info", access_log=not quiet,
                            timeout_graceful_shutdown=int(settings.drain + 0.999), lifespan="on")
    auth = "token required" if settings.token is not None else "no token (open to anyone who can reach it)"
    console.print(f"icpd serve: http://{settings.host}:{sock.getsockname()[1]} ({auth}); model {settings.model}, "
                  f"{len(settings.supports)} support set(s); stop with Ctrl-C or SIGTERM", markup=False,
                  highlight=False, soft_wrap=True)
    _Server(config).run(sockets=[sock])


class _Server:
    """uvicorn's Server whose SIGTERM/SIGINT stop it gracefully and are then done with: uvicorn would
    raise the signal again afterwards, and the console script's SIGTERM handler would turn a clean
    stop into exit 143."""

    def __new__(cls, config):  # a subclass made lazily: uvicorn is imported only by `icpd serve`
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
                try:
                    yield
                finally:
                    for s, handler in previous.items():
                        signal.signal(s, handler)

        return Server(config)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
