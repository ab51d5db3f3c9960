"""The three ONNX forms of the rank prior (topk, sort, plugin) give the eager probabilities.

Each form is exported from the same small module (``pair_priors`` with one support set shared by
the batch, as the matcher uses it) and run in ONNX Runtime on seeded episodes with the cases
where forms could part ways: k = 0 (an empty mask), k = all support pixels, exact ties (integer
features: every distance is an exact integer, so many are equal and only the tie rule orders
them), 5 shots with one empty mask, batch > 1.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from icpd.config import RankPriorForm
from icpd.model.priors import pair_priors

C, SIDE = 6, 7  # channels, support/query map side (Ns = Nq = 49)
TOL = 1e-6  # the bound: same probabilities up to float32 round-off of the discount sums


class RankOnly(torch.nn.Module):
    """query (B, C, Nq), support (K, C, Ns), mask (K, Ns) -> rank prior (B, K, Nq), support shared by the
    batch."""

    def __init__(self, rank: RankPriorForm | str) -> None:
        super().__init__()
        self.rank = rank

    def forward(self, query: torch.Tensor, support: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = support.unsqueeze(0)
        norms = (s * s).sum(2).sqrt()
        return pair_priors(query, s, mask.unsqueeze(0), norms, rank=self.rank)[1]


def export_form(form: RankPriorForm, path) -> str:
    from icpd.export.rank_prior_onnx import translation_table

    batch, shots = torch.export.Dim("batch", min=1, max=16), torch.export.Dim("shots", min=1, max=16)
    args = episode(2, 2, seed=0)
    torch.onnx.export(RankOnly(form).eval(), args, str(path), dynamo=True, opset_version=18,
                      input_names=["query", "support", "mask"], output_names=["rank"],
                      dynamic_shapes=({0: batch}, {0: shots}, {0: shots}),
                      custom_translation_table=translation_table(form), verbose=False)
    return str(path)


def episode(batch: int, shots: int, seed: int, *, integer: bool = False, masks: str = "random"):
    g = torch.Generator().manual_seed(seed)
    if integer:
        # distances are exact integers, so many are equal and only the tie rule orders them. One
        # nonzero entry of +-1 or +-2 per support pixel: |s|^2 in {1, 4} is exact whether a form
        # squares the features (plugin) or the precomputed norms sqrt(|s|^2) (eager, topk, sort).
        q = torch.randint(-1, 2, (batch, C, SIDE * SIDE), generator=g).float()
        s = torch.zeros(shots, C, SIDE * SIDE)
        rows = torch.randint(0, C, (shots, 1, SIDE * SIDE), generator=g)
        picks = torch.randint(0, 4, (shots, 1, SIDE * SIDE), generator=g)
        values = torch.tensor([-2.0, -1.0, 1.0, 2.0])[picks]
        s.scatter_(1, rows, values)
    else:
        q = torch.randn(batch, C, SIDE * SIDE, generator=g)
        s = torch.randn(shots, C, SIDE * SIDE, generator=g)
    m = (torch.rand(shots, SIDE * SIDE, generator=g) < 0.3).float()
    m = m * torch.rand(shots, SIDE * SIDE, generator=g)
    if masks == "empty":
        m.zero_()
    elif masks == "full":
        m = torch.rand(shots, SIDE * SIDE, generator=g) * 0.9 + 0.1  # every pixel relevant (soft values)
    elif masks == "one-empty":
        m[1].zero_()
        m[3] = 1.0  # and one shot where every pixel is relevant
    return q, s, m


CASES = {
    "random b2 k1": {"batch": 2, "shots": 1, "seed": 1},
    "k = 0": {"batch": 2, "shots": 2, "seed": 2, "masks": "empty"},
    "k = all": {"batch": 1, "shots": 2, "seed": 3, "masks": "full"},
    "exact ties": {"batch": 3, "shots": 2, "seed": 4, "integer": True},
    "5 shots, one empty mask": {"batch": 2, "shots": 5, "seed": 5, "masks": "one-empty"},
    "5 shots, ties, one empty mask": {"batch": 2, "shots": 5, "seed": 6, "integer": True,
                                      "masks": "one-empty"},
}


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    from icpd.export.ort_session import ort_session

    d = tmp_path_factory.mktemp("rank-forms")
    out = {}
    for form in RankPriorForm:
        path = export_form(form, d / f"{form.value}.onnx")
        if form == RankPriorForm.PLUGIN:
            pytest.importorskip("onnxruntime_extensions",
                                reason="the plugin form runs in ORT through onnxruntime-extensions")
        out[form] = (ort_session(path, custom_ops=form == RankPriorForm.PLUGIN), onnx.load(path))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_every_form_gives_the_eager_probabilities(sessions, case):
    q, s, m = episode(**CASES[case])
    with torch.no_grad():
        ref = RankOnly("eager")(q, s, m).numpy()
    assert ref.shape == (q.shape[0], s.shape[0], SIDE * SIDE)
    for form, (sess, _) in sessions.items():
        (got,) = sess.run(None, {"query": q.numpy(), "support": s.numpy(), "mask": m.numpy()})
        assert got.shape == ref.shape, form
        np.testing.assert_allclose(got, ref, rtol=0, atol=TOL, err_msg=f"{form.value}: {case}")
    if CASES[case].get("masks") == "empty":
        assert (ref == 0).all()
    if CASES[case].get("masks") == "full":
        assert np.abs(ref - 1).max() < TOL  # every ranking of all-relevant pixels is perfect


def test_the_sort_form_has_static_shapes_only(sessions):
    """sort: one batched TopK, K from Shape, sorted=1, no Scan/Loop; topk keeps its Scan."""
    nodes = {n.op_type for n in sessions[RankPriorForm.SORT][1].graph.node}
    assert "TopK" in nodes and not {"Scan", "Loop", "NonZero"} & nodes
    graph = sessions[RankPriorForm.SORT][1].graph
    producer = {o: n for n in graph.node for o in n.output}
    (topk,) = [n for n in graph.node if n.op_type == "TopK"]
    assert {a.name: a.i for a in topk.attribute}["sorted"] == 1
    # K is the row length: a Shape output, which the exporter folds into an initializer (Ns is static)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    assert topk.input[1] in inits or producer[topk.input[1]].op_type == "Shape"
    if topk.input[1] in inits:
        assert inits[topk.input[1]].tolist() == [SIDE * SIDE]
    assert "Scan" in {n.op_type for n in sessions[RankPriorForm.TOPK][1].graph.node}


def test_old_name_onnx_is_topk():
    """The exporter reads its form with RankPriorForm.parse (tests/test_rank_prior_names.py pins every
    entry)."""
    assert RankPriorForm.parse("onnx") is RankPriorForm.TOPK
    assert RankPriorForm.parse("sort") is RankPriorForm.SORT
    with pytest.raises(ValueError, match=r"rank_prior='scan': choose one of topk, sort, plugin"):
        RankPriorForm.parse("scan")
