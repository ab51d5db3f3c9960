"""PyTorch eager backend (CPU or CUDA) over the weights in a model dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class TorchBackend:
    """Same interface as OrtBackend; arrays in and out are numpy."""

    name = "torch"

    def __init__(self, model_dir: Path, files: dict[str, Path], device: str = "cpu", threads: int | None = None) -> None:
        from icpd.export.wrappers import MatcherGraph, matcher_input_names
        from icpd.model.checkpoint import load_checkpoint

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: torch sees no CUDA device here; use --device cpu")
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = load_checkpoint(files["weights"]).to(self.device).eval()
        rank = "eager"  # CPU: topk with the exact-tie fallback is the fastest
        if self.device.type == "cuda":
            from icpd.kernels.cuda_op import CudaOpUnavailableError, ensure_cuda_op

            try:
                ensure_cuda_op()  # the rank-prior kernel behind icpd::ndcg_prior on CUDA
                rank = "features"
            except CudaOpUnavailableError:
                pass  # no nvcc: vectorised PyTorch on the GPU
        self.matcher = MatcherGraph(self.model, all_outputs=True, rank=rank)
        self.matcher_inputs = matcher_input_names(self.model.preset, self.model.preset.fusion_weight > 0)
        from icpd.export.wrappers import MATCHER_OUTPUTS_ALL

        self.matcher_outputs = list(MATCHER_OUTPUTS_ALL)

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        from icpd.export.wrappers import preprocess_pixels

        with torch.no_grad():
            return preprocess_pixels(self._t(pixels), self.model.preset).cpu().numpy()

    def encode(self, images: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.cpu().numpy() for t in self.model.encode_unchecked(self._t(images)).as_list()]

    def match(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        with torch.no_grad():
            out = self.matcher(*[self._t(feeds[n]) for n in self.matcher_inputs])
        by_name = dict(zip(self.matcher_outputs, out))
        return [by_name[n].cpu().numpy() for n in outputs]
