"""From a PyTorch ICPD-Net to a model dir: the ONNX export through fixed wrapper modules
(:mod:`.onnx`, :mod:`.wrappers`, the rank prior's three ONNX forms in :mod:`.rank_prior_onnx`), its
self-check against PyTorch (:mod:`.validate`, :mod:`.pass_rule`), and the FP16 and INT8 conversions of
an FP32 model dir (:mod:`.fp16`, :mod:`.quantize`). The model dir's format lives in
:mod:`icpd.artifacts.model_dir`.
"""
