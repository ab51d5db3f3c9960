"""Inference backends behind ``icpd.runtime.Predictor``: torch, ort (ONNX Runtime), trt (TensorRT).

Each follows :class:`~icpd.runtime.backends.protocol.RuntimeBackend`; the modules import their
libraries lazily (``import icpd.runtime.backends.trt`` works without TensorRT).
:mod:`~icpd.runtime.backends.registry` is the one table of them: names and aliases, the libraries
each needs and whether they are installed, the devices each can use, their versions.
"""
