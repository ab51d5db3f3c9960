"""Many scenes on a Ray cluster (``icpd infer --ray``). Ray is optional: ``pip install 'icpd[ray]'``;
it is imported only inside the functions that need it."""

from icpd.cluster.ray_infer import RAY_EXTRA_HINT, infer_paths_ray

__all__ = ["RAY_EXTRA_HINT", "infer_paths_ray"]
