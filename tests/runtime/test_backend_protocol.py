"""The backend protocol: support sets go to the backend once per class, query features stay where
they are computed, and the torch backend leaves the process's thread count alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icpd.runtime.backends.ort import OrtBackend
from icpd.runtime.backends.protocol import RuntimeBackend
from icpd.runtime.backends.torch import TorchBackend
from icpd.runtime.predictor import Predictor


def _images(seed: int, n: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)


def _mask(i: int) -> np.ndarray:
    m = np.zeros((128, 128), np.uint8)
    m[10 + 8 * i : 70 + 8 * i, 20:80] = 1
    return m


def _counting(base: type) -> type:
    """A real backend class that counts support uploads and host <-> backend copies of features."""

    class Counting(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.uploads: list[str] = []  # class name per load_support
            self.host_copies = 0  # to_host / from_host of images or features
            self.encoded: list[list] = []  # the feature objects encode returned
            self.matched: list[list] = []  # the feature objects match received

        def load_support(self, support):
            self.uploads.append(support.class_name)
            return super().load_support(support)

        def encode(self, images):
            out = super().encode(images)
            self.encoded.append(list(out))
            return out

        def match(self, features, support, outputs):
            self.matched.append(list(features))
            return super().match(features, support, outputs)

        def to_host(self, x):
            self.host_copies += 1
            return super().to_host(x)

        def from_host(self, features):
            self.host_copies += 1
            return super().from_host(features)

    return Counting


@pytest.fixture(scope="module")
def supports(tiny_model_dir, tiny_embeddings):
    p = Predictor.load(tiny_model_dir, backend="ort")
    return [p.encode_support(list(_images(10 + i, 1)), [_mask(i)], f"class{i}", np.roll(tiny_embeddings, i, 0))
            for i in range(3)]


@pytest.mark.parametrize("base", [OrtBackend, TorchBackend], ids=["ort", "torch"])
def test_one_upload_per_class_and_no_host_copies_of_query_features(tiny_model_dir, supports, base, monkeypatch):
    """Issue 10 section 2: whatever the number of queries, each class's support set goes to the backend
    once per Predictor, and the query features reach every class's matcher pass as the very objects
    the encoder produced (no GPU -> CPU -> GPU trip, no per-class copy)."""
    import icpd.runtime.backends.ort as ort_module
    import icpd.runtime.backends.torch as torch_module

    module = ort_module if base is OrtBackend else torch_module
    counting = _counting(base)
    monkeypatch.setattr(module, base.__name__, counting)  # Predictor.load builds the counting backend
    p = Predictor.load(tiny_model_dir, backend=base.name)
    backend = p.backend
    assert type(backend) is counting and isinstance(backend, RuntimeBackend)
    for s in supports:
        p.add_support(s)
    queries = 4
    for q in range(queries):
        pred = p.predict(_images(q), priors=q % 2 == 1)
        assert pred.probs.shape == (2, 3, 128, 128)
    assert backend.uploads == ["class0", "class1", "class2"]  # once per class, not per query
    assert backend.host_copies == 0
    assert len(backend.encoded) == queries and len(backend.matched) == queries * len(supports)
    for i, matched in enumerate(backend.matched):
        encoded = backend.encoded[i // len(supports)]
        assert all(m is e for m, e in zip(matched, encoded, strict=True))
    # a second session on the same backend uploads its own classes once, and shares nothing else
    other = p.fork()
    other.add_support(supports[0])
    other.predict(_images(9))
    assert backend.uploads == ["class0", "class1", "class2", "class0"]


def test_ort_backend_keeps_features_in_ort_values(tiny_model_dir, supports):
    """ONNX Runtime's features are OrtValues (IOBinding), and predictions equal the plain session.run path."""
    from onnxruntime import OrtValue

    p = Predictor.load(tiny_model_dir, backend="ort")
    p.add_support(supports[0])
    images = _images(3)
    feats = p.encode(p.preprocess(images))
    assert all(isinstance(f, OrtValue) for f in feats)
    b = p.backend
    (pixels_out,) = b.pre.run(None, {"pixels": images})
    host_feats = b.enc.run(None, {"images": pixels_out})
    feeds = b.signature.feeds(host_feats, supports[0].tensors)
    (logits,) = b.mat.run(["logits"], feeds)
    (got,) = p.match(feats, supports[0], ["logits"])
    np.testing.assert_array_equal(got, logits)


def test_torch_backend_leaves_the_process_thread_count_alone(tiny_model_dir, supports):
    """Defect 8: TorchBackend(threads=N) used to call torch.set_num_threads(N) for the whole process;
    now N applies inside the backend's calls only."""
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    seen = []
    p = Predictor.load(tiny_model_dir, backend="torch", threads=wanted)
    assert torch.get_num_threads() == before
    p.add_support(supports[0])
    matcher = p.backend.matcher
    original = matcher.forward

    def spy(*args):
        seen.append(torch.get_num_threads())
        return original(*args)

    matcher.forward = spy
    p.predict(_images(5))
    assert seen == [wanted]  # the backend's own calls run with its threads
    assert torch.get_num_threads() == before


def test_trt_backend_module_imports_without_tensorrt():
    """The TensorRT backend is importable (and follows the protocol) where TensorRT is missing."""
    from icpd.runtime.backends.trt import TrtBackend

    for method in ("preprocess", "encode", "load_support", "match", "to_host", "from_host"):
        assert callable(getattr(TrtBackend, method))
