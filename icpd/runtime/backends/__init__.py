"""Inference backends behind ``icpd.runtime.Predictor``: torch, ort (ONNX Runtime), trt (TensorRT).

Each follows :class:`~icpd.runtime.backends.protocol.RuntimeBackend`; the modules import their
libraries lazily (``import icpd.runtime.backends.trt`` works without TensorRT).
"""
