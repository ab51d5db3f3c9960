"""`icpd serve` on ONNX Runtime runs without torch: the serve extra holds no torch, so neither loading
the app nor answering a segmentation may import it (issue 24: "no torch on the ONNX Runtime path")."""

from __future__ import annotations

import subprocess
import sys

from tests.apps.serve.conftest import png_bytes, scene

_CODE = """
import sys
from pathlib import Path
from fastapi.testclient import TestClient
from icpd.apps.serve.app import create_app
from icpd.apps.serve.settings import ServeSettings
import icpd.commands.serve  # the command's module too

app = create_app(ServeSettings(model=Path(sys.argv[1]), supports=(Path(sys.argv[2]),), threads=1))
with TestClient(app) as client:
    assert app.state.service.loaded.wait(120)
    body = Path(sys.argv[3]).read_bytes()
    r = client.post("/v1/segment", content=body, headers={"Accept": "image/png", "Content-Type": "image/png"})
    heavy = [m for m in ("torch", "torchvision", "open_clip") if m in sys.modules]
    print(r.status_code, r.headers["content-type"], heavy)
"""


def test_serving_on_onnx_runtime_imports_no_torch(serve_model, tmp_path):
    model, supports = serve_model
    image = tmp_path / "query.png"
    image.write_bytes(png_bytes(scene(128, 128)))
    out = subprocess.run([sys.executable, "-c", _CODE, str(model), str(supports["ship"]), str(image)],
                         check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "200 image/png []"
