"""Mixed precision for the INT8 encoder: its quantized blocks, their sensitivity, the speed that remains.

:func:`icpd.export.quantize.convert_model_dir_int8` quantizes every MatMul with a constant weight.
When the result misses the INT8 pass rule (:mod:`icpd.export.pass_rule`), it keeps the most
sensitive *blocks* in FP32, one at a time, until the self-check passes, the way TensorRT's
accuracy workflow and ModelOpt's ``auto_quantize`` give the layers that cost the most a higher
precision. This module supplies the parts:

- :func:`quantized_blocks`: the MatMuls the quantizer turned into ``MatMulInteger``, grouped by
  the module that made them (the exporter records each node's module scope): one ViT residual
  block's attention, its MLP, the CLIP input resize, the final projection.
- :func:`block_sensitivity`: per block, how far the encoder's outputs move when only that block
  is INT8 ("quantize one block at a time against FP32"), without building one graph per block:
  one run of the INT8 encoder with every quantized MatMul's input X and output Y exposed (the
  node-by-node activation comparison of ``onnxruntime.quantization.qdq_loss_debug``) gives the
  error each INT8 kernel adds, ``Y - X @ W`` (W the FP32 weight); the FP32 encoder, with an Add
  after each of those MatMuls, then runs once per block with that block's errors injected. The
  self-check after each step is what decides.
- :func:`encoder_speedup`: a short interleaved timing of the FP32 and INT8 encoders on the
  export's calibration inputs.
"""

from __future__ import annotations

import fnmatch
import math
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SENSITIVITY_IMAGES = 1  # calibration images the sensitivity is measured on: one FP32 encoder run per block each
TIMING_ROUNDS = 3  # interleaved rounds of the speed-up measurement (every image, both encoders, per round)
TIMING_IMAGES = 2  # calibration images timed per round
_QUANT_SUFFIX = "_quant"  # the quantizer names MatMulInteger "<node>_quant"


@dataclass(frozen=True)
class Block:
    """MatMuls kept in FP32 together: one module of the network (or one node outside any)."""

    name: str  # module scope, e.g. "cross_modal_visual_backbone.transformer.resblocks.3.mlp", or the node name
    nodes: tuple[str, ...]  # the quantizer's names of its MatMuls (what ``nodes_to_exclude`` takes)


# -- blocks -----------------------------------------------------------------------------------------------
def _scope(node: Any) -> str:
    """The module a node was traced in: the innermost residual sub-block (``*.attn``, ``*.mlp``) or,
    outside one, the innermost module; '' for nodes of the wrapper itself."""
    meta = {p.key: p.value for p in node.metadata_props}
    scopes = [s for s in _parse_list(meta.get("pkg.torch.onnx.name_scopes", ""))[:-1] if s]  # last: the op's own name
    for s in reversed(scopes):
        if s.endswith((".attn", ".mlp")):
            return s
    return scopes[-1] if scopes else ""


def _parse_list(text: str) -> list[str]:
    import ast

    try:
        value = ast.literal_eval(text) if text else []
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def quantized_nodes_of(int8_model: Any) -> list[str]:
    """Names (as the quantizer knows them) of the MatMuls it quantized dynamically, in graph order."""
    return [n.name[: -len(_QUANT_SUFFIX)] for n in int8_model.graph.node
            if n.op_type == "MatMulInteger" and n.name.endswith(_QUANT_SUFFIX)]


def _fp32_node(fp32_nodes: dict[str, Any], name: str) -> Any:
    """The FP32 node behind a quantizer name (a Gemm became "<gemm>_MatMul" before quantization)."""
    return fp32_nodes.get(name) or fp32_nodes.get(name.removesuffix("_MatMul"))


def quantized_blocks(fp32_model: Any, int8_model: Any) -> list[Block]:
    """The quantized MatMuls of ``int8_model`` grouped into blocks by their module in ``fp32_model``
    (graph order; the common "model." prefix dropped from scope names)."""
    fp32_nodes = {n.name: n for n in fp32_model.graph.node}
    groups: dict[str, list[str]] = {}
    for name in quantized_nodes_of(int8_model):
        node = _fp32_node(fp32_nodes, name)
        scope = _scope(node) if node is not None else ""
        groups.setdefault(scope.removeprefix("model.") or name, []).append(name)
    return [Block(k, tuple(v)) for k, v in groups.items()]


def match_blocks(blocks: Sequence[Block], patterns: Iterable[str]) -> tuple[list[Block], list[str]]:
    """Blocks a block name or one of its node names matches (``fnmatch``, case-sensitive), and the
    patterns that match nothing."""
    chosen: dict[str, Block] = {}
    unmatched = []
    for pattern in patterns:
        hits = [b for b in blocks if fnmatch.fnmatchcase(b.name, pattern)
                or any(fnmatch.fnmatchcase(n, pattern) for n in b.nodes)]
        if not hits:
            unmatched.append(pattern)
        chosen.update((b.name, b) for b in hits)
    return [b for b in blocks if b.name in chosen], unmatched


# -- sensitivity ------------------------------------------------------------------------------------------
def _weight(fp32_model: Any, base_dir: Path, node: Any) -> np.ndarray | None:
    """The constant weight W of a MatMul / Gemm as ``X @ W`` uses it (Gemm's transB applied)."""
    from onnx import numpy_helper

    name = node.input[1]
    init = next((t for t in fp32_model.graph.initializer if t.name == name), None)
    if init is not None:
        w = numpy_helper.to_array(init, base_dir=str(base_dir))
    else:
        const = next((n for n in fp32_model.graph.node if n.op_type == "Constant" and n.output[0] == name), None)
        if const is None:
            return None
        w = numpy_helper.to_array(const.attribute[0].t)
    if node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute):
        w = w.T
    return w.astype(np.float32)


def _probes(int8_model: Any, names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """quantizer name -> (X, Y): the float input of its DynamicQuantizeLinear and the float output
    of the Cast -> Mul that rescales its MatMulInteger (the original MatMul's output)."""
    producer = {o: n for n in int8_model.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in int8_model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    by_name = {n.name: n for n in int8_model.graph.node}
    probes = {}
    for name in names:
        mmi = by_name[name + _QUANT_SUFFIX]
        x = producer[mmi.input[0]].input[0]
        cast = consumers[mmi.output[0]][0]
        mul = next(c for c in consumers[cast.output[0]] if c.op_type == "Mul")
        probes[name] = (x, mul.output[0])
    return probes


def _node_noise(fp32_model: Any, fp32_dir: Path, int8_encoder: Path, names: Sequence[str],
                feeds: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Per feed, per quantized MatMul n: the error its INT8 kernel adds, ``Y - X @ W`` (X, Y its input
    and output in the INT8 graph, W the FP32 weight). The probe graph (the INT8 encoder with X and
    Y of every n as outputs) is written beside ``int8_encoder`` (it reads the same data) and removed."""
    import onnx

    from icpd.export.ort_session import ort_session

    model = onnx.load(str(int8_encoder), load_external_data=False)
    probes = _probes(model, names)
    have = {o.name for o in model.graph.output}
    for tensor in dict.fromkeys(t for pair in probes.values() for t in pair):
        if tensor not in have:
            model.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    fp32_nodes = {n.name: n for n in fp32_model.graph.node}
    weights = {n: _weight(fp32_model, fp32_dir, _fp32_node(fp32_nodes, n)) for n in names}
    probe = int8_encoder.with_name(".sensitivity-probe.onnx")
    noise = []
    try:
        onnx.save(model, str(probe))
        sess = ort_session(probe, "cpu")
        out_names = [o.name for o in sess.get_outputs()]
        for feed in feeds:
            values = dict(zip(out_names, sess.run(None, feed)))
            noise.append({n: values[probes[n][1]] - values[probes[n][0]] @ weights[n]
                          for n in names if weights[n] is not None})
    finally:
        probe.unlink(missing_ok=True)
    return noise


def _injection_graph(fp32_model: Any, names: Sequence[str], folder: Path, data_files: Sequence[Path]) -> Path:
    """The FP32 encoder with ``Y_n + noise_n`` in place of every quantized MatMul's output Y_n
    (``noise_n`` a graph input, ``[0]`` when unused), written to ``folder`` beside links to its data."""
    import os
    import shutil

    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(fp32_model)
    fp32_nodes = {n.name: n for n in model.graph.node}
    nodes = []
    targets = {id(_fp32_node(fp32_nodes, n)): n for n in names}
    for node in model.graph.node:
        nodes.append(node)
        if id(node) in targets:
            y, noise = node.output[0], _noise_input(targets[id(node)])
            node.output[0] = y + "__int8_raw"
            nodes.append(onnx.helper.make_node("Add", [y + "__int8_raw", noise], [y], name=noise + "_add"))
            model.graph.input.append(onnx.helper.make_tensor_value_info(noise, onnx.TensorProto.FLOAT, None))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    for f in data_files:  # the initialisers' locations are relative to the graph's folder
        try:
            os.link(f, folder / f.name)
        except OSError:  # another file system
            shutil.copy2(f, folder / f.name)
    path = folder / "injection.onnx"
    onnx.save(model, str(path))
    return path


def _noise_input(name: str) -> str:
    return f"int8_noise__{name}"


def block_sensitivity(fp32_encoder: Path, int8_encoder: Path, blocks: Sequence[Block],
                      feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """Per block: how far the encoder's outputs move when only that block is INT8 (module docstring).

    The error each quantized MatMul's INT8 kernel adds (:func:`_node_noise`, one run of the INT8
    encoder) is injected, one block at a time, into the FP32 encoder: ``rel_error`` is the largest
    relative L2 change ``||out_b - out|| / ||out||`` over the encoder outputs (norms summed over
    ``feeds``), ``cosine`` their smallest cosine to FP32. Measured at the outputs, not at the node:
    a block near the input (the CLIP resize: tiny preset, 0.9 % error of its own, the smallest)
    adds an error every later block carries (it moved the query prior most).
    """
    import tempfile

    import onnx

    from icpd.artifacts.model_dir import external_data_files
    from icpd.export.ort_session import ort_session

    fp32_model = onnx.load(str(fp32_encoder), load_external_data=False)
    names = [n for b in blocks for n in b.nodes]
    noise = _node_noise(fp32_model, fp32_encoder.parent, int8_encoder, names, feeds)
    data = [fp32_encoder.parent / f for f in external_data_files(fp32_encoder)]
    zero = np.zeros(1, np.float32)
    moved = {b.name: {} for b in blocks}  # block -> output -> [sum |d|^2, sum |ref|^2, sum ref.d]
    with tempfile.TemporaryDirectory(prefix=".sensitivity-", dir=int8_encoder.parent) as tmp:
        sess = ort_session(_injection_graph(fp32_model, names, Path(tmp), data), "cpu")
        out_names = [o.name for o in sess.get_outputs()]
        inputs = {i.name for i in sess.get_inputs()}
        silent = {_noise_input(n): zero for n in names if _noise_input(n) in inputs}
        for feed, nz in zip(feeds, noise):
            ref = dict(zip(out_names, sess.run(None, {**feed, **silent})))
            for b in blocks:
                injected = {_noise_input(n): nz[n].astype(np.float32) for n in b.nodes if n in nz}
                got = dict(zip(out_names, sess.run(None, {**feed, **silent, **injected})))
                for o in out_names:
                    r, d = ref[o].astype(np.float64), got[o].astype(np.float64) - ref[o]
                    acc = moved[b.name].setdefault(o, [0.0, 0.0, 0.0])
                    acc[0] += float(np.sum(d * d))
                    acc[1] += float(np.sum(r * r))
                    acc[2] += float(np.sum(r * (r + d)))
    result = {}
    for b in blocks:
        rel = max((math.sqrt(a / r) if r > 0 else 0.0 for a, r, _ in moved[b.name].values()), default=0.0)
        cos = min((c / math.sqrt(r * (r + 2 * (c - r) + a)) if r > 0 else 1.0 for a, r, c in moved[b.name].values()),
                  default=1.0)
        result[b.name] = {"rel_error": rel, "cosine": cos,
                          "sqnr_db": -20 * math.log10(rel) if rel > 0 else math.inf}
    return result


# -- speed ------------------------------------------------------------------------------------------------
def encoder_speedup(fp32_encoder: Path, int8_encoder: Path, feeds: Sequence[dict[str, np.ndarray]],
                    rounds: int = TIMING_ROUNDS) -> dict[str, Any]:
    """FP32 / INT8 encoder time, interleaved: two warm-up runs each, then ``rounds`` rounds that run
    both encoders on each of the first :data:`TIMING_IMAGES` feeds (which encoder goes first
    alternates), medians in ms. ONNX Runtime's default threads, the process's other load included:
    a short check that INT8 still pays, not a benchmark (``icpd bench --precision fp32,int8``)."""
    from icpd.export.ort_session import ort_session

    feeds = list(feeds)[:TIMING_IMAGES]
    sessions = {"fp32": ort_session(fp32_encoder, "cpu"), "int8": ort_session(int8_encoder, "cpu")}
    for s in sessions.values():  # first runs allocate and plan
        for _ in range(2):
            s.run(None, feeds[0])
    samples: dict[str, list[float]] = {k: [] for k in sessions}
    for r in range(rounds):
        for key in ("fp32", "int8") if r % 2 == 0 else ("int8", "fp32"):
            for feed in feeds:
                t0 = time.perf_counter()
                sessions[key].run(None, feed)
                samples[key].append(1000 * (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {"fp32_ms": med["fp32"], "int8_ms": med["int8"], "speedup": med["fp32"] / med["int8"],
            "rounds": rounds, "images": len(feeds), "what": "encoder only, on the calibration images, interleaved"}


# -- the record -------------------------------------------------------------------------------------------
def summary_line(record: dict[str, Any]) -> str:
    """One line for the terminal: how much is INT8, what stayed FP32 and why, the speed-up left."""
    kept = record["fp32_blocks"]
    total, quantized = record["matmuls"], record["matmuls_int8"]
    what = "none" if not kept else ", ".join(
        f"{k['block']} ({k['why']}" + (f", rel. error {100 * k['rel_error']:.2g} %" if "rel_error" in k else "") + ")"
        for k in kept)
    speed = record.get("speed") or {}
    pace = (f"; encoder {speed['speedup']:.2f}x FP32 ({speed['fp32_ms']:.0f} -> {speed['int8_ms']:.0f} ms, "
            f"{speed['rounds']} interleaved rounds)") if speed else ""
    return f"INT8: {quantized} of {total} MatMuls quantized; kept in FP32: {what}{pace}"
