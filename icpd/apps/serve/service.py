"""The service behind the HTTP routes: the model loaded once and kept warm, the support registry, and a
bounded work queue served by worker threads.

    service = SegmentService(settings, metrics)
    service.start()                        # loads in a thread of its own: /healthz answers meanwhile
    future = service.submit(job, deadline)  # ServeError 503 (Retry-After) when workers + queue are taken
    service.stop()                         # the workers finish what they hold, then end

The registry is one :class:`~icpd.runtime.predictor.Predictor` holding every loaded class; a
request gets :meth:`Predictor.select` of its classes (labels i + 1 for the i-th class asked, as
``icpd infer --support`` in that order), sharing the backend and the classes' uploaded tensors.
Registry changes replace that Predictor (copy on write), so a request in flight keeps the classes
it started with. Admission is one semaphore of ``workers + queue`` slots: memory is bounded by
the slots, never by the clients.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from icpd.apps.serve.errors import ServeError
from icpd.apps.serve.settings import SAFE_NAME

if TYPE_CHECKING:
    from icpd.apps.serve.metrics import ServeMetrics
    from icpd.apps.serve.settings import ServeSettings
    from icpd.artifacts.support_cache import SupportSet
    from icpd.runtime.predictor import Predictor
    from icpd.runtime.tiling import SceneOptions

__all__ = ["DeadlineExceeded", "Job", "SegmentService", "check_name"]

log = logging.getLogger("icpd.serve")


class DeadlineExceeded(Exception):
    """A request's deadline passed (while it waited, or between two predictor calls)."""


def check_name(name: str, what: str = "support name") -> str:
    """A support/class name from a request: 1 to 64 of ``A-Z a-z 0-9 . _ -`` (ServeError 422 otherwise)."""
    if not SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise ServeError(422, f"{what} {name!r}: use 1 to 64 of the characters A-Z a-z 0-9 . _ - (and not '.' or "
                              "'..'), e.g. ship or storage_tank")
    return name


@dataclass
class Job:
    """One request's work: ``fn(job)`` runs on a worker; ``job.check()`` raises once the deadline passed."""

    fn: Callable[[Job], Any]
    deadline: float  # time.monotonic() by which the answer is due
    future: Future = field(default_factory=Future)
    queued: float = field(default_factory=time.monotonic)
    started: float | None = None

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise DeadlineExceeded


class SegmentService:
    """Model, classes and workers of one server (or one Ray Serve replica)."""

    def __init__(self, settings: ServeSettings, metrics: ServeMetrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.predictor: Predictor | None = None  # every loaded class (replaced on each registry change)
        self.error: str | None = None  # why loading failed
        self.loaded = threading.Event()
        self._lock = threading.Lock()  # guards self.predictor
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(settings.workers + settings.queue)
        self._waiting = 0  # jobs admitted but not started
        self._count_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._seconds = 1.0  # running mean of a job's seconds, for Retry-After
        self.embeddings: Any = None  # icpd.model.text.ClassEmbeddings of settings.class_embeddings
        self.options: SceneOptions | None = None  # tile (resolved for the model), overlap, batch

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model and the start-up supports in a thread, then start the workers."""
        loader = threading.Thread(target=self._load, name="icpd-serve-load", daemon=True)
        loader.start()
        self._threads.append(loader)

    def _load(self) -> None:
        from icpd.artifacts.support_cache import SupportSet
        from icpd.runtime.predictor import Predictor
        from icpd.runtime.tiling import SceneOptions

        s = self.settings
        try:
            predictor = Predictor.load(s.model, backend=s.backend, device=s.device, threads=s.threads,
                                       engine_dir=s.engine_dir)
            options = SceneOptions(tile=s.tile, overlap=s.overlap, batch=s.batch).for_model(predictor.preset.image_size)
            for path in s.supports:
                support = SupportSet.load(path, predictor.fingerprint)
                check_name(support.class_name, f"support {path}: class name")
                predictor.add_support(support)
            if s.class_embeddings is not None:
                from icpd.model.text import load_class_embeddings

                self.embeddings = load_class_embeddings(s.class_embeddings, preset=predictor.preset)
        except (ValueError, OSError, ImportError, ServeError) as e:  # a user's model, supports or options
            self.error = e.message if isinstance(e, ServeError) else str(e)
            log.error("error: %s", self.error)
            self.loaded.set()
            return
        except Exception as e:  # a bug or a backend's own failure (a corrupt ONNX file): the traceback to the log
            self.error = f"{type(e).__name__}: {e}"
            log.exception("the model could not be loaded")
            self.loaded.set()
            return
        with self._lock:
            self.options, self.predictor = options, predictor
        self.metrics.supports.set(len(predictor.supports))
        for i in range(s.workers):
            t = threading.Thread(target=self._work, name=f"icpd-serve-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        self.loaded.set()
        log.info("model %s loaded (%s); classes: %s", s.model, s.backend, ", ".join(predictor.class_names) or "none")

    def stop(self, timeout: float | None = None) -> None:
        """The workers finish the jobs already queued (first in, first out), then end; waits at most
        ``timeout`` s (default ``settings.drain``). uvicorn calls this after the requests in flight were answered."""
        for _ in range(self.settings.workers):
            self._jobs.put(None)
        end = time.monotonic() + (self.settings.drain if timeout is None else timeout)
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))

    @property
    def ready(self) -> bool:
        return self.predictor is not None and bool(self.predictor.supports)

    def why_not_ready(self) -> str:
        if self.error is not None:
            return f"the model could not be loaded: {self.error}"
        if self.predictor is None:
            return f"loading the model {self.settings.model}; retry in a few seconds"
        return "no support set loaded: PUT one at /v1/supports/{name} (a .support file or images and masks)"

    def model(self) -> Predictor:
        """The Predictor of every loaded class (ServeError 503 while loading)."""
        p = self.predictor
        if p is None:
            raise ServeError(503, self.why_not_ready(), {"Retry-After": "5"})
        return p

    def scene_options(self, threshold: float) -> SceneOptions:
        """The server's tiling with a request's threshold (checked by the caller: 0 to 1)."""
        self.model()
        assert self.options is not None  # set with the predictor
        return dataclasses.replace(self.options, threshold=threshold)

    # -- the registry ---------------------------------------------------------------------------------
    def select(self, names: Sequence[str] | None) -> Predictor:
        """A session over ``names`` (None: every loaded class, in load order); 404 naming the loaded ones."""
        p = self.model()
        if not p.supports:
            raise ServeError(503, self.why_not_ready(), {"Retry-After": "5"})
        if names is None:
            return p.select(p.class_names)
        for n in names:
            check_name(n, "class")
        try:
            return p.select(names)
        except ValueError as e:  # InputError: unknown or repeated names, the loaded ones listed
            status = 404 if "unknown" in str(e) else 422
            raise ServeError(status, f"classes={','.join(names)}: {e}") from None

    def put_support(self, name: str, support: SupportSet) -> bool:
        """Add (or replace) class ``name``; True when it replaced one. The set is renamed to ``name``."""
        check_name(name)
        support = dataclasses.replace(support, class_name=name, meta={**support.meta, "class_name": name})
        with self._lock:
            current = self.model()
            replaced = name.casefold() in (c.casefold() for c in current.class_names)
            updated = current.select(current.class_names)
            updated.add_support(support, replace=True)
            self.predictor = updated
        self.metrics.supports.set(len(updated.supports))
        return replaced

    def delete_support(self, name: str) -> None:
        check_name(name)
        with self._lock:
            current = self.model()
            keep = [c for c in current.class_names if c.casefold() != name.casefold()]
            if len(keep) == len(current.class_names):
                raise ServeError(404, f"support {name!r}: not loaded; the loaded classes are "
                                      f"{', '.join(current.class_names) or 'none'}")
            self.predictor = current.select(keep)
        self.metrics.supports.set(len(keep))

    # -- the work queue -------------------------------------------------------------------------------
    def submit(self, fn: Callable[[Job], Any], deadline: float) -> Job:
        """Queue ``fn`` for a worker; ServeError 503 with Retry-After when every slot is taken."""
        self.model()
        if not self._slots.acquire(blocking=False):
            retry = max(1, math.ceil(self._seconds * (self.settings.queue + 1) / self.settings.workers))
            raise ServeError(503, f"busy: {self.settings.workers} worker(s) busy and {self.settings.queue} request(s) "
                                  f"waiting (the queue is full); retry after {retry} s",
                             {"Retry-After": str(retry)})
        job = Job(fn, deadline)
        with self._count_lock:
            self._waiting += 1
            self.metrics.queue_depth.set(self._waiting)
        self._jobs.put(job)
        return job

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._count_lock:
                self._waiting -= 1
                self.metrics.queue_depth.set(self._waiting)
            if not job.future.set_running_or_notify_cancel():
                self._slots.release()
                continue  # its client gave up (deadline) while it waited
            job.started = time.monotonic()
            self.metrics.stage.labels("queue").observe(job.started - job.queued)
            error: BaseException | None = None
            try:
                job.check()
                result = job.fn(job)
            except Exception as e:  # noqa: BLE001 - handed to the request: its answer says it, a bug's traceback is logged
                error = e
            except BaseException as e:  # SystemExit, KeyboardInterrupt: the request fails, and this worker stops
                self._slots.release()
                job.future.set_exception(e)
                raise
            self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - job.started)
            self._slots.release()  # before the answer: a client that sends its next request at once finds it free
            if error is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(error)
