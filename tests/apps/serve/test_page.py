"""The page at ``/`` in a real headless Chromium (Debian's chromium + chromedriver, through selenium)
against a real ``icpd serve`` (tiny preset, token set): token, image picker, class checkboxes,
threshold, submit; the overlay drawn on the canvas is the API's label PNG blended over the image,
pixel for pixel, and the counts table equals the JSON API's counts. Skipped, saying why, where
chromium, chromedriver or selenium is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.apps.serve.live_server import LiveServer, support_args
from tests.runtime.supports import make_supports

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="needs Debian's chromium and chromedriver (apt-get install chromium "
                                       "chromium-driver; .ci/run installs them)")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the dev extra) is not installed")

TOKEN = "page-test-token"
H, W = 160, 200  # larger than one 128 px tile: the page's scene goes through the tiling too
BOX = (40, 110, 60, 150)  # y0, y1, x0, x1 of the bright object
ALPHA = 0.5  # the page's default overlay opacity


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("page")
    supports = make_supports(tiny_model_dir, d)
    live = LiveServer(["--model", str(tiny_model_dir), *support_args(supports),
                       "--token", TOKEN, "--threads", "1"], d / "serve.log")
    live.supports = supports
    try:
        live.wait_ready()
        yield live
    finally:
        assert live.stop() == 0, live.output()[-3000:]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--force-device-scale-factor=1", "--force-color-profile=srgb", "--window-size=1200,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def scene_png(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A seeded textured scene with one bright object (RGB), written as PNG."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(30, 90, (H, W, 3), dtype=np.uint8)
    y0, y1, x0, x1 = BOX
    rgb[y0:y1, x0:x1] = (235, 225, 210)
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path, rgb


@pytest.fixture(scope="module")
def threshold(tiny_model_dir, server, scene_png) -> str:
    """The median ship probability over the object (same model, supports and tiling as the server):
    the seeded tiny model has random weights, so this is the threshold at which it labels about half
    of the object's pixels; the overlay then has labelled and unlabelled pixels in the object."""
    from icpd.runtime.predictor import Predictor
    from icpd.runtime.scene import segment_array

    p = Predictor.load(tiny_model_dir, backend="ort", threads=1)
    p.add_support(server.supports[0])  # ship
    size = p.preset.image_size
    probs = segment_array(p, scene_png[1], size, 32, 8, 0.5).probs[0]  # icpd serve's default overlap and batch
    y0, y1, x0, x1 = BOX
    return f"{float(np.median(probs[y0:y1, x0:x1])):.6f}"


def _wait(driver, condition, timeout: float = 60.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _open_page(driver, server, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(server.url + "/")
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "reload").click()


def test_page_overlay_and_counts_equal_the_api(server, browser, scene_png, threshold, tmp_path):
    from selenium.webdriver.common.by import By

    path, rgb = scene_png
    _open_page(browser, server, TOKEN)
    boxes = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#classes input[name="class"]'))
    assert [b.get_attribute("value") for b in boxes] == ["ship", "tank"]  # GET /v1/supports, label order
    boxes[0].click()  # ship only
    field = browser.find_element(By.ID, "threshold")
    field.clear()
    field.send_keys(threshold)
    browser.find_element(By.ID, "image").send_keys(str(path))
    browser.find_element(By.ID, "submit").click()
    _wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", \
        browser.find_element(By.ID, "error").get_attribute("textContent")

    # the API's answers for the same bytes, classes and threshold
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{server.url}/v1/segment?classes=ship&threshold={threshold}"
    png = httpx.post(url, content=path.read_bytes(), headers={**auth, "Accept": "image/png"}, timeout=60)
    counts = httpx.post(url, content=path.read_bytes(), headers={**auth, "Accept": "application/json"}, timeout=60)
    assert png.status_code == counts.status_code == 200
    colours = cv2.cvtColor(cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    labelled = colours.any(axis=2)  # the palette's label 0 (background) is black, class 1 magenta
    y0, y1, x0, x1 = BOX
    inside = labelled[y0:y1, x0:x1]
    assert inside.any() and not inside.all(), "precondition: part of the object labelled, part not"

    # the screenshot of the canvas: the scene with the labelled pixels tinted, nothing else
    shot = tmp_path / "page.png"
    canvas = browser.find_element(By.ID, "overlay")
    shot.write_bytes(canvas.screenshot_as_png)
    seen = cv2.cvtColor(cv2.imread(str(shot), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(int)
    dy, dx = (seen.shape[0] - H) // 2, (seen.shape[1] - W) // 2  # the canvas's border around its pixels
    assert seen.shape[0] - H in (0, 2) and seen.shape[1] - W in (0, 2), seen.shape
    seen = seen[dy : dy + H, dx : dx + W]
    want = np.where(labelled[..., None], np.round((1 - ALPHA) * rgb + ALPHA * colours), rgb).astype(int)
    diff = np.abs(seen - want).max(axis=2)
    assert (diff <= 2).mean() > 0.999, f"overlay differs from the API's labels at {(diff > 2).sum()} pixels ({shot})"
    tinted = np.abs(seen - rgb).max(axis=2) > 20
    assert tinted[y0:y1, x0:x1].any(), f"the overlay is blank over the object ({shot})"
    assert np.array_equal(tinted, labelled), "tinted pixels are exactly the labelled ones"

    # the counts table: the JSON API's numbers, and the class colour of label 1
    doc = counts.json()
    rows = browser.find_elements(By.CSS_SELECTOR, "#counts tbody tr")
    table = {r.find_element(By.CLASS_NAME, "name").text: int(r.find_element(By.CLASS_NAME, "pixels").text)
             for r in rows}
    assert table == {c: doc["pixels"][c] for c in doc["classes"]} == {"ship": int(labelled.sum())}
    assert rows[0].find_element(By.CLASS_NAME, "label").text == "1"


def test_page_colours_are_the_overlay_palette(server, browser):
    """The page's legend colours are icpd's overlay palette (the label PNG's colours), label by label."""
    from icpd.io.viz import OVERLAY_PALETTE

    browser.get(server.url + "/")
    got = browser.execute_script("return Array.from({length: 40}, (_, i) => labelColour(i + 1));")
    assert got == OVERLAY_PALETTE[1:41].tolist()


def test_page_shows_errors_as_text(server, browser, scene_png):
    """A wrong token: the API's 401 message on the page, no result drawn."""
    from selenium.webdriver.common.by import By

    _open_page(browser, server, "wrong-token")
    error = browser.find_element(By.ID, "error")
    _wait(browser, lambda d: error.text)
    assert error.text.startswith("classes: 401: missing or wrong token"), error.text
