"""Applications over the runtime core: ``infer`` (files, local or Ray), ``stream`` (video), ``serve``
(HTTP service) and ``validate`` (every backend against PyTorch). Each drives a
:class:`~icpd.runtime.predictor.Predictor` and the one scene pipeline
(:func:`~icpd.runtime.scene.run_scene`); none imports another."""
