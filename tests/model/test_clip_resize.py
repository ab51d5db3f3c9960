"""The CLIP branch's antialiased resize as two matrix products (TensorRT has no antialiased Resize).

Guards: ``icpd check-trt`` found ``Resize(antialias=1)`` in every exported encoder, which
TensorRT's ONNX parser refuses; the matrix form must keep PyTorch's numerics.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from icpd.model.clip_branch import antialias_weights, resize_antialias


@pytest.mark.parametrize(("n_in", "n_out"), [(256, 224), (128, 112), (300, 224), (257, 224), (1000, 224), (64, 112)])
def test_weights_are_the_kernels_own(n_in, n_out):
    """Bit-identical to what F.interpolate(antialias=True) applies (its output on an identity matrix)."""
    eye = torch.eye(n_in)[None, None]
    ref = F.interpolate(eye, size=(n_out, n_in), mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()
    np.testing.assert_array_equal(antialias_weights(n_in, n_out), ref)


@pytest.mark.parametrize(("h", "w", "size"), [(256, 256, 224), (128, 160, 112), (224, 224, 224)])
def test_resize_matches_interpolate(h, w, size):
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0)) * 3
    ref = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    got = resize_antialias(x, size)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() <= 4 * torch.finfo(torch.float32).eps * x.abs().max()  # summation order only


def test_export_writes_no_antialiased_resize(tmp_path):
    """The ONNX graph holds MatMuls with constant weights instead of Resize(antialias=1)."""
    import onnx

    class Clip(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return resize_antialias(x, 112)

    path = tmp_path / "r.onnx"
    torch.onnx.export(Clip().eval(), (torch.randn(1, 3, 128, 128),), str(path), dynamo=True, opset_version=18,
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=8)},), verbose=False)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Resize" not in ops and "MatMul" in ops
