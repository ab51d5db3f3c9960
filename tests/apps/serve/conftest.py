"""Fixtures of the service tests: the tiny model with two seeded support caches, scenes, started apps."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.runtime.supports import make_supports

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
S = 128  # tiny preset input size
UTM_WKT_EPSG = 32633  # a projected CRS in metres: areas in m²
GEO_TRANSFORM = (0.5, 0.0, 500000.0, 0.0, -0.5, 4100000.0)  # 0.5 m pixels


@pytest.fixture(scope="session")
def serve_model(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """(model dir, {class: support cache}) for the tiny preset: ship and tank."""
    folder = tmp_path_factory.mktemp("serve-supports")
    return Path(tiny_model_dir), dict(zip(("ship", "tank"), make_supports(Path(tiny_model_dir), folder)))


def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 noise with two bright rectangles (something for the classes to find)."""
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.rectangle(img, (20, 30), (90, 100), (200, 40, 40), -1)
    cv2.rectangle(img, (w // 2, h // 2), (w // 2 + 50, h // 2 + 40), (30, 200, 60), -1)
    return img


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def write_geotiff(path: Path, rgb: np.ndarray, nodata: int | None = None) -> Path:
    """A 3-band uint8 GeoTIFF in UTM 33N with 0.5 m pixels (declaring ``nodata`` if given)."""
    import rasterio
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", height=rgb.shape[0], width=rgb.shape[1], count=3, dtype="uint8",
                       crs=rasterio.crs.CRS.from_epsg(UTM_WKT_EPSG), transform=Affine(*GEO_TRANSFORM),
                       nodata=nodata) as dst:
        dst.write(np.moveaxis(rgb, -1, 0))
    return path


def start(settings, timeout: float = 120.0) -> Iterator:
    """A TestClient over ``create_app(settings)``, its lifespan running and its model loaded."""
    from fastapi.testclient import TestClient

    from icpd.apps.serve.app import create_app

    app = create_app(settings)
    with TestClient(app) as client:
        assert app.state.service.loaded.wait(timeout), "the model did not load in time"
        yield client


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)
