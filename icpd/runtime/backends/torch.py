"""PyTorch eager backend (CPU or CUDA) over the weights in a model dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class TorchBackend:
    """Same interface as OrtBackend; arrays in and out are numpy."""

    name = "torch"
    MAX_CACHED = 1024  # support arrays kept on the device (about 43 per class)

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
        # support-set arrays -> device tensors, made once per array (support-only work stays off the
        # query path: on CUDA this is a host-to-device copy of every level's features per shot)
        self._support_tensors: dict[int, tuple[np.ndarray, torch.Tensor]] = {}

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def _support_t(self, a: np.ndarray) -> torch.Tensor:
        hit = self._support_tensors.get(id(a))
        if hit is None or hit[0] is not a:  # keep the array alive so its id stays unique
            if len(self._support_tensors) >= self.MAX_CACHED:  # e.g. evaluation: a new support set per episode
                self._support_tensors.clear()
            hit = (a, self._t(a))
            self._support_tensors[id(a)] = hit
        return hit[1]

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        from icpd.export.wrappers import preprocess_pixels

        with torch.no_grad():
            return preprocess_pixels(self._t(pixels), self.model.preset).cpu().numpy()

    def encode(self, images: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.cpu().numpy() for t in self.model.encode_unchecked(self._t(images)).as_list()]

    def match(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        with torch.no_grad():
            out = self.matcher(*[self._t(feeds[n]) if n.startswith("query_") else self._support_t(feeds[n])
                                 for n in self.matcher_inputs])
        by_name = dict(zip(self.matcher_outputs, out))
        return [by_name[n].cpu().numpy() for n in outputs]
