"""Inference backends behind ``icpd.runtime.Predictor``: torch, ort (ONNX Runtime), trt (TensorRT)."""
