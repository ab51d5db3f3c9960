"""The I/O signature of the exported graphs: the one owner of the matcher's input/output names,
their order, dynamic axes and the packing of a support set into matcher inputs.

Levels are the L backbone layers (``layer00`` ..), then the CLIP grid (``clip``). The matcher's
inputs, in this order:

- ``query_<level>``: query features, batch B first (B, C_l, h_l, w_l); the CLIP level (B, g, g, D);
- ``support_feat_<level>`` (K, C_l, N_l), ``support_norm_<level>`` (K, N_l) pixel L2 norms,
  ``support_mask_<level>`` (K, N_l) soft masks at that level: one support set, K shots, no batch
  axis (shared by all B queries);
- ``class_embeddings`` (15, D), the target class first;
- ``support_masks`` (K, S, S) raw masks, only when the preset fuses (``fusion_weight > 0``).

Outputs: :data:`MATCHER_OUTPUTS`. Users: ``MatcherGraph`` (unpacking), the export (names, dynamic
axes, the ``model.json`` entry), the Predictor and its backends (feeds), the support-cache check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from icpd.config import Preset

T = TypeVar("T")  # a tensor type: torch.Tensor, np.ndarray, an OrtValue ...


class PreparedLevels(Protocol):
    """What :meth:`MatcherSignature.pack_support` reads of a prepared support batch: per level
    features (B, K, C, N), norms and masks (B, K, N). ``icpd.model.icpd_net.PreparedSupport`` (torch)
    and the runtime's numpy form both have it; typed here so the format layer does not import the
    model (it sits below it)."""

    @property
    def features(self) -> Sequence[Any]: ...

    @property
    def norms(self) -> Sequence[Any]: ...

    @property
    def masks(self) -> Sequence[Any]: ...

MATCHER_OUTPUTS: tuple[str, ...] = ("logits", "query_prior", "pyramid_l4", "pyramid_l3", "pyramid_l2")
CLASS_EMBEDDINGS = "class_embeddings"
RAW_MASKS = "support_masks"


def level_names(preset: Preset) -> list[str]:
    """``layer00`` .. ``layer{L-1}``, then ``clip``."""
    return [f"layer{i:02d}" for i in range(preset.num_layers)] + ["clip"]


def encoder_output_names(preset: Preset) -> list[str]:
    """The encoder graph's outputs, one per level: ``feat_<level>``."""
    return [f"feat_{n}" for n in level_names(preset)]


@dataclass(frozen=True)
class MatcherInputs:
    """The matcher's positional inputs, grouped: one list entry per level."""

    query: list[Any]  # (B, C_l, h_l, w_l); last: (B, g, g, D)
    features: list[Any]  # (K, C_l, N_l)
    norms: list[Any]  # (K, N_l)
    masks: list[Any]  # (K, N_l)
    class_embeddings: Any  # (15, D)
    raw_masks: Any | None  # (K, S, S) when fusing, else None


@dataclass(frozen=True)
class MatcherSignature:
    """Names, order and axes of the matcher's inputs for one preset."""

    levels: tuple[str, ...]
    fusion: bool  # the preset fuses support features with the query prior (RFFM): raw masks are an input
    outputs: tuple[str, ...] = MATCHER_OUTPUTS

    @classmethod
    def for_preset(cls, preset: Preset) -> MatcherSignature:
        return cls(tuple(level_names(preset)), preset.fusion_weight > 0)

    # -- names ----------------------------------------------------------------------------------
    @property
    def query_inputs(self) -> list[str]:
        return [f"query_{n}" for n in self.levels]

    @property
    def support_inputs(self) -> list[str]:
        """Everything a support cache holds for the matcher, in input order."""
        names = [f"support_{kind}_{n}" for kind in ("feat", "norm", "mask") for n in self.levels]
        return [*names, CLASS_EMBEDDINGS, *([RAW_MASKS] if self.fusion else [])]

    @property
    def inputs(self) -> list[str]:
        return [*self.query_inputs, *self.support_inputs]

    def missing_support(self, names: Sequence[str] | Mapping[str, Any]) -> list[str]:
        """Support inputs absent from ``names`` (a support cache's tensor names), in input order."""
        have = set(names)
        return [n for n in self.support_inputs if n not in have]

    # -- export ---------------------------------------------------------------------------------
    def dynamic_axes(self, batch: Any, shots: Any) -> tuple[dict[int, Any] | None, ...]:
        """Per input, its dynamic axes (``torch.onnx.export(dynamic_shapes=(...,))``): axis 0 of the
        query features is the batch, axis 0 of every support input but the class embeddings the shots."""
        query = [{0: batch}] * len(self.levels)
        support = [None if n == CLASS_EMBEDDINGS else {0: shots} for n in self.support_inputs]
        return (*query, *support)

    def describe(self, example: Sequence[Any]) -> dict[str, Any]:
        """The ``model.json`` ``matcher`` entry from one example input per name: symbolic shapes
        (``batch``/``shots`` on the dynamic axes) with the dtype last, the outputs, the shots axis."""
        axes = self.dynamic_axes("batch", "shots")
        inputs = {}
        for name, t, dyn in zip(self.inputs, example, axes):
            dims: list[Any] = list(t.shape)
            for axis, label in (dyn or {}).items():
                dims[axis] = label
            inputs[name] = [*dims, str(t.dtype).replace("torch.", "")]
        return {"inputs": inputs, "outputs": list(self.outputs), "shots_axis": "dynamic"}

    # -- packing --------------------------------------------------------------------------------
    def pack_support(self, prepared: PreparedLevels, class_embeddings: T, raw_masks: T | None = None,
                     item: int = 0) -> dict[str, T]:
        """Item ``item`` of a prepared support batch -> support inputs by name.

        prepared: features (B, K, C, N), norms and masks (B, K, N) per level; class_embeddings
        (15, D) with the target first; raw_masks (K, S, S), needed when the preset fuses.
        """
        out: dict[str, Any] = {}
        for name, f, n, m in zip(self.levels, prepared.features, prepared.norms, prepared.masks):
            out[f"support_feat_{name}"] = f[item]
            out[f"support_norm_{name}"] = n[item]
            out[f"support_mask_{name}"] = m[item]
        out[CLASS_EMBEDDINGS] = class_embeddings
        if self.fusion:
            if raw_masks is None:
                raise ValueError("this preset fuses support features (fusion_weight > 0): give the raw support masks")
            out[RAW_MASKS] = raw_masks
        return out

    def feeds(self, query: Sequence[T], support: Mapping[str, T]) -> dict[str, T]:
        """Query features (one per level, batch first) + support inputs by name -> every input by name."""
        if len(query) != len(self.levels):
            raise ValueError(f"query features: {len(query)} levels; this model has {len(self.levels)}")
        return {**dict(zip(self.query_inputs, query)), **{n: support[n] for n in self.support_inputs}}

    def positional(self, query: Sequence[T], support: Mapping[str, T]) -> list[T]:
        """Like :meth:`feeds`, in input order (``MatcherGraph``'s positional arguments)."""
        feeds = self.feeds(query, support)
        return [feeds[n] for n in self.inputs]

    def unpack(self, inputs: Sequence[T]) -> MatcherInputs:
        """Positional inputs (:attr:`inputs` order) -> grouped (``MatcherGraph.forward``)."""
        n = len(self.levels)
        if len(inputs) != len(self.inputs):
            raise ValueError(f"matcher: {len(inputs)} inputs; expected {len(self.inputs)} "
                             f"({self.inputs[0]} .. {self.inputs[-1]})")
        return MatcherInputs(query=list(inputs[:n]), features=list(inputs[n : 2 * n]),
                             norms=list(inputs[2 * n : 3 * n]), masks=list(inputs[3 * n : 4 * n]),
                             class_embeddings=inputs[4 * n],
                             raw_masks=inputs[4 * n + 1] if self.fusion else None)
