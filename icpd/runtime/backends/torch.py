"""PyTorch eager backend (CPU or CUDA) over the weights in a model dir.

Images and features are torch tensors on the backend's device; a support handle is the
class's support inputs as device tensors (made once, in ``load_support``). ``threads`` applies
to this backend's calls only: torch's process-wide thread count is set for the duration of
each call and restored afterwards (other torch code in the process keeps its own setting).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from icpd.artifacts.signature import MATCHER_OUTPUTS, MatcherSignature
from icpd.config import RankPriorForm
from icpd.errors import ParamError, arg

if TYPE_CHECKING:
    from icpd.artifacts.support_cache import SupportSet


class TorchBackend:
    """Runs ``icpd.export.wrappers``' graphs eagerly; see
    :class:`~icpd.runtime.backends.protocol.RuntimeBackend`."""

    name = "torch"

    def __init__(self, files: dict[str, Path], device: str = "cpu", threads: int | None = None) -> None:
        from icpd.export.wrappers import MatcherGraph
        from icpd.model.checkpoint import load_checkpoint
        from icpd.model.priors import EAGER

        if "weights" not in files:  # a runtime-only model dir (`icpd export --runtime-only`)
            # `icpd export --runtime-only` is a command to run: it stays in the command's words
            raise ParamError(f"model dir {files['encoder'].parent} is runtime-only: it has no "
                             "model.safetensors, the PyTorch weights the torch backend runs from; export "
                             f"without --runtime-only, or pass {arg('backend', 'ort')}", param="backend")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ParamError(f"{arg('device', device)}: torch sees no CUDA device here; use "
                             f"{arg('device', 'cpu')}")
        self.threads = threads
        self.device = torch.device(device)
        with self._scope():
            self.model = load_checkpoint(files["weights"]).to(self.device).eval()
        rank: RankPriorForm | str = EAGER  # CPU: topk with the exact-tie fallback is the fastest
        if self.device.type == "cuda":
            from icpd.kernels.cuda_op import CudaOpUnavailableError, ensure_cuda_op

            try:
                ensure_cuda_op()  # the rank-prior kernel behind icpd::ndcg_prior on CUDA
                rank = RankPriorForm.PLUGIN  # icpd::ndcg_prior on features: the kernel
            except CudaOpUnavailableError:
                pass  # no nvcc: vectorised PyTorch on the GPU
        self.matcher = MatcherGraph(self.model, all_outputs=True, rank=rank)
        self.signature = MatcherSignature.for_preset(self.model.preset)
        self.matcher_outputs = list(MATCHER_OUTPUTS)

    @contextmanager
    def _scope(self) -> Iterator[None]:
        """No autograd, no TF32, and ``threads`` intra-op threads for this call only (restored afterwards).

        TF32 (on by default for cuDNN convolutions) would make the FP32 backend round matmul and
        convolution inputs to 10-bit mantissas on Ampere and newer GPUs."""
        previous = torch.get_num_threads()
        change = bool(self.threads) and self.threads != previous
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        if change:
            torch.set_num_threads(self.threads)  # type: ignore[arg-type]
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            with torch.no_grad():
                yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
            if change:
                torch.set_num_threads(previous)

    def _t(self, a: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(a, torch.Tensor):
            return a.to(self.device)
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    # -- backend interface ---------------------------------------------------------------------
    def preprocess(self, pixels: Sequence[np.ndarray]) -> torch.Tensor:
        from icpd.export.wrappers import preprocess_pixels

        with self._scope():
            return torch.cat([preprocess_pixels(self._t(p), self.model.preset) for p in pixels])

    def encode(self, images: torch.Tensor | np.ndarray) -> list[torch.Tensor]:
        with self._scope():
            return self.model.encode_unchecked(self._t(images)).as_list()

    def load_support(self, support: SupportSet) -> list[torch.Tensor]:
        """The support inputs in signature order, on the device."""
        return [self._t(support.tensors[n]) for n in self.signature.support_inputs]

    def match(self, features: list[torch.Tensor], support: list[torch.Tensor],
              outputs: Sequence[str]) -> list[np.ndarray]:
        with self._scope():
            out = dict(zip(self.matcher_outputs, self.matcher(*features, *support)))
            return [out[n].cpu().numpy() for n in outputs]

    def to_host(self, x: torch.Tensor | list[torch.Tensor]) -> np.ndarray | list[np.ndarray]:
        if isinstance(x, torch.Tensor):
            return x.cpu().numpy()
        return [t.cpu().numpy() for t in x]

    def from_host(self, features: Sequence[np.ndarray]) -> list[torch.Tensor]:
        return [self._t(f) for f in features]
