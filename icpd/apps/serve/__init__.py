"""``icpd serve``: a segmentation service over one loaded model (FastAPI, run by uvicorn or Ray Serve).

    from icpd.apps.serve.app import create_app
    from icpd.apps.serve.settings import ServeSettings
    app = create_app(ServeSettings(model="model_dir", supports=("ship.support",)))

Modules: :mod:`~icpd.apps.serve.settings` (what a server is started with), :mod:`~icpd.apps.serve.app`
(routes, auth, lifespan), :mod:`~icpd.apps.serve.service` (model, classes, bounded work queue),
:mod:`~icpd.apps.serve.decode` (request bytes -> pixels, as ``icpd infer`` reads files),
:mod:`~icpd.apps.serve.segment` (the scene pipeline per request), :mod:`~icpd.apps.serve.supports`,
:mod:`~icpd.apps.serve.kserve` (Open Inference Protocol), :mod:`~icpd.apps.serve.geojson`,
:mod:`~icpd.apps.serve.metrics`, :mod:`~icpd.apps.serve.errors`, :mod:`~icpd.apps.serve.ray_serve`.
Nothing is imported here: ``icpd.apps.serve.settings`` loads without FastAPI.
"""
