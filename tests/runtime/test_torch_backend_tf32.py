"""The torch backend computes FP32 as FP32: TF32 (cuDNN's default for convolutions) is off inside its
calls and the process's settings are restored afterwards. The flags are process-wide switches that
only CUDA reads, so the rule is checked on the CPU."""

from __future__ import annotations

import numpy as np
import torch

from icpd.runtime.predictor import Predictor


def test_tf32_is_off_inside_the_backend_calls_only(tiny_model_dir):
    backend = Predictor.load(tiny_model_dir, backend="torch").backend
    seen = []
    backend.model.backbone.register_forward_pre_hook(
        lambda module, args: seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)))
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        size = backend.model.preset.image_size
        images = backend.preprocess([np.zeros((1, size, size, 3), np.uint8)])
        backend.encode(images)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert seen == [(False, False)]
