"""TensorRT's ONNX-parser operator matrix as data: read it from the package, or parse the Markdown.

The matrix ships as ``icpd/trt/data/onnx_trt_operators.json``, made by :func:`parse_operator_matrix`
from onnx/onnx-tensorrt ``docs/operators.md`` at branch ``10.1-GA`` (the last one that lists
per-op restrictions; a copy is in ``third_party/tensorrt/onnx-parser/`` beside the repository,
and ``tests/trt/test_check.py`` checks the JSON against it). The JSON records its source, the
TensorRT versions it is applied to and, per version, the opset range.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any

MATRIX_FILE = "onnx_trt_operators.json"
# ONNX TensorProto data type -> the matrix's type name
ONNX_TYPE_NAMES = {1: "FP32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "DOUBLE",
                   16: "BF16", 17: "FP8", 18: "FP8", 22: "INT4"}


def parse_operator_matrix(markdown: str) -> dict[str, Any]:
    """operators.md text -> {"opset": [lo, hi], "types": [...], "operators": {op: {supported, types, restrictions}}}."""
    opset = re.search(r"opset (\d+) to opset (\d+)", markdown)
    types = re.search(r"supports the following ONNX data types: ([A-Z0-9, and]+)", markdown)
    ops: dict[str, Any] = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[1] not in ("Y", "N") or not re.fullmatch(r"[A-Za-z0-9]+", cells[0]):
            continue
        kinds = [t.strip() for t in cells[2].split(",") if t.strip()] if len(cells) > 2 else []
        restriction = cells[3].replace("<br />", " ").strip() if len(cells) > 3 else ""
        ops[cells[0]] = {"supported": cells[1] == "Y", "types": kinds, "restrictions": restriction}
    return {
        "opset": [int(opset.group(1)), int(opset.group(2))] if opset else None,
        "types": [t.strip() for t in re.split(r",| and ", types.group(1)) if t.strip()] if types else [],
        "operators": ops,
    }


@lru_cache(maxsize=1)
def operator_matrix() -> dict[str, Any]:
    """The packaged matrix (see the module docstring)."""
    return json.loads(resources.files("icpd.trt").joinpath("data", MATRIX_FILE).read_text())
