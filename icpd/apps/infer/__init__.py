"""``icpd infer``: options, the run session (lock, manifest, resume), scene outputs, and the local
and Ray runners over :func:`icpd.runtime.scene.run_scene`."""
