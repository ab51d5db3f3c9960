"""``Predictor.select``: a class subset in the order asked, on the same backend, labels as if added so."""

from __future__ import annotations

import numpy as np
import pytest

from icpd.runtime.predictor import Predictor
from icpd.runtime.validation import InputError
from tests.runtime.supports import make_supports


@pytest.fixture(scope="module")
def loaded(tiny_model_dir, tmp_path_factory):
    paths = make_supports(tiny_model_dir, tmp_path_factory.mktemp("select"), ("ship", "tank"))
    p = Predictor.load(tiny_model_dir, backend="ort", threads=1)
    for path in paths:
        p.add_support(path)
    return p, paths


def test_select_orders_labels_as_adding_in_that_order(loaded, tiny_model_dir):
    p, (ship, tank) = loaded
    img = np.random.default_rng(3).integers(0, 255, (2, 128, 128, 3), dtype=np.uint8)
    view = p.select(["TANK", "ship"])
    assert view.class_names == ["tank", "ship"] and view.backend is p.backend
    added = Predictor.load(tiny_model_dir, backend="ort", threads=1)
    added.add_support(tank)
    added.add_support(ship)
    np.testing.assert_array_equal(view.predict(img).labels, added.predict(img).labels)
    np.testing.assert_array_equal(p.select(["ship"]).predict(img).probs[:, 0], p.predict(img).probs[:, 0])
    assert p.class_names == ["ship", "tank"]  # the source is unchanged


def test_select_refuses_unknown_and_repeated_names_listing_the_loaded_ones(loaded):
    p, _ = loaded
    with pytest.raises(InputError, match=r"^unknown class\(es\) 'plane'; the loaded classes are ship, tank$"):
        p.select(["ship", "plane"])
    with pytest.raises(InputError, match=r"^classes \['ship', 'Ship'\] repeat one; the loaded classes are ship, tank$"):
        p.select(["ship", "Ship"])
