"""Starting or joining Ray, the one way ``icpd infer --ray`` and ``icpd serve --ray`` both do it.

    started = start_ray(ray, address, workers=2, command="icpd infer")   # True: the caller shuts it down

The applications may not import each other ("applications are independent"), so what both need of
Ray's start-up lives here, one layer below them. Ray itself is imported by the caller (each names
its own extra when Ray is missing) and handed in: this module imports no Ray.
"""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["start_ray"]


def start_ray(ray: Any, address: str | None, workers: int, command: str) -> bool:
    """Start a local Ray (``address`` None or ``"local"``) or join ``address`` (``auto``,
    ``ray://host:10001``). ``workers``: the actors or replicas the caller will start (a local Ray
    gets a logical CPU for each plus one); ``command``: how the user typed it (``"icpd infer"``),
    named in the error. Returns True when this call started Ray (the caller shuts it down), False
    where it was running already.

    Raises ParamError (a ValueError) naming ``address`` when no cluster answers there.
    """
    if ray.is_initialized():
        return False
    # ERROR: Ray's start-up warnings (token authentication, ...) are not the user's business here
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": True}
    if address in (None, "local"):
        # Ray runs its workers at nice 15 unless told otherwise: on a machine shared with other
        # work the actors then lose the CPU to everything else (measured: an infer actor took 59 s
        # of wall clock for 7 s of CPU on a loaded 2-core VM). A local Ray runs this command's own
        # work, so its workers keep the caller's priority; a cluster keeps its own setting.
        os.environ.setdefault("RAY_worker_niceness", "0")
        # one CPU per actor / replica plus one for the decode tasks / the Serve proxy (logical CPUs:
        # Ray's bookkeeping, not threads)
        ray.init(num_cpus=max(os.cpu_count() or 1, workers + 1), **kwargs)
    else:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:  # no cluster there (or none running, for `auto`): the user's address
            from icpd.errors import ParamError, arg

            raise ParamError(
                f"{arg('address', address)}: could not join a Ray cluster there ({exc}). Check the address "
                "`ray start --head` printed (`auto`: one running on this machine); a cluster with token "
                "authentication needs its token here too (RAY_AUTH_TOKEN; `ray get-auth-token` on the head "
                f"prints it); no address (`{command} --ray` alone) starts a local Ray"
            ) from exc
    return True
