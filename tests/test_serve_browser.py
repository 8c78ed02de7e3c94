"""``inpaintkit serve`` end to end in a real browser: open, paint, undo, fill, explore attention.

Drives Debian's Chromium through Selenium and its chromedriver (Playwright's browser download
is not reachable from CI). Skipped where no Chromium is installed, except under
``INPAINTKIT_REQUIRE_BROWSER=1`` (``.ci/run`` sets it), where that is a failure.

``INPAINTKIT_SCREENSHOT=docs/images/serve.png`` also saves the page's screenshot there (the
one in docs/serve.md); ``INPAINTKIT_SCREENSHOT_CHECKPOINT=FILE`` fills with that generator
instead of the tiny random one, for a screenshot worth looking at.
"""

# The optional packages are checked (and the module skipped) before they are imported.
# ruff: noqa: E402

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

pytest.importorskip(
    "starlette", reason='the serve extra is not installed (pip install -e ".[serve]")'
)
httpx = pytest.importorskip("httpx")
pytest.importorskip("selenium")

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from inpaintkit.checkpoint import save_generator
from inpaintkit.model.generator import Generator, GeneratorConfig
from inpaintkit.serve import create_app
from inpaintkit.serve.server import BackgroundServer, open_socket

CHROMIUM = next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
)
CHROMEDRIVER = shutil.which("chromedriver")

if CHROMIUM is None or CHROMEDRIVER is None:
    reason = (
        "no Chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)"
    )
    if os.environ.get("INPAINTKIT_REQUIRE_BROWSER"):
        raise RuntimeError(f"INPAINTKIT_REQUIRE_BROWSER is set but there is {reason}")
    pytest.skip(reason, allow_module_level=True)

# The stroke, in image pixels: a horizontal line with the page's default brush (24 px wide).
STROKE = ((60.0, 80.0), (180.0, 80.0))
BRUSH = 24


def chrome() -> webdriver.Chrome:
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--force-device-scale-factor=1", "--no-first-run"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def assert_no_script_errors(driver: webdriver.Chrome) -> None:
    errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def distance_to_segment(
    height: int, width: int, a: tuple[float, float], b: tuple[float, float]
) -> np.ndarray:
    """``(H, W)`` distance of each pixel centre to the segment a-b (image coordinates x, y)."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    (ax, ay), (bx, by) = a, b
    t = np.clip(
        ((xs - ax) * (bx - ax) + (ys - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2), 0, 1
    )
    return np.hypot(xs - (ax + t * (bx - ax)), ys - (ay + t * (by - ay)))


def png_array(data_bytes: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data_bytes)).convert("RGB"))


def wait_for_state(driver: webdriver.Chrome, state: str, timeout: float = 60) -> None:
    def reached(d: webdriver.Chrome) -> bool:
        message = d.find_element(By.ID, "message")
        if message.is_displayed():
            raise AssertionError(f"the page shows an error: {message.text}")
        return d.execute_script("return document.body.dataset.state") == state

    WebDriverWait(driver, timeout).until(reached)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FOLDER: a photo with a mask, one without; and the tiny model."""
    root = tmp_path_factory.mktemp("serve-browser")
    (root / "photos").mkdir()
    Image.fromarray(data.chelsea()).resize((240, 160), Image.Resampling.LANCZOS).save(
        root / "photos" / "cat.png"
    )
    Image.fromarray(data.coffee()).resize((240, 160), Image.Resampling.LANCZOS).save(
        root / "photos" / "cup.png"
    )
    mask = np.zeros((160, 240), np.uint8)
    mask[20:50, 20:60] = 255
    Image.fromarray(mask).save(root / "photos" / "cup_mask.png")
    torch.manual_seed(0)
    save_generator(root / "tiny.safetensors", Generator(GeneratorConfig(channels=4)))
    return root


@pytest.fixture(scope="module")
def page(photos: Path):
    """``(driver, url, client)``: the page of a folder-mode server open in headless Chromium."""
    checkpoint = os.environ.get("INPAINTKIT_SCREENSHOT_CHECKPOINT", photos / "tiny.safetensors")
    sock = open_socket("127.0.0.1", 0)
    # calibrate: the page's estimates rest on a start-up fill per method, as under the command.
    app = create_app(
        photos / "photos", checkpoint, device="cpu", port=sock.getsockname()[1], calibrate=True
    )
    with BackgroundServer(app, sock) as url, httpx.Client(base_url=url) as client:
        driver = chrome()
        try:
            yield driver, url, client
        finally:
            driver.quit()


def open_page(driver: webdriver.Chrome, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.body.dataset.ready")
    )


def client_point(driver: webdriver.Chrome, x: float, y: float) -> tuple[int, int]:
    """Where image pixel position (x, y) is on the screen."""
    point = driver.execute_script(
        "return window.inpaintkit.imageToClient(arguments[0], arguments[1])", x, y
    )
    return round(point["x"]), round(point["y"])


def drag(driver: webdriver.Chrome, points: list[tuple[float, float]]) -> None:
    """Press the left button at the first image position, move through the others, release."""
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(*client_point(driver, *points[0]))
    actions.pointer_action.pointer_down()
    for point in points[1:]:
        actions.pointer_action.move_to_location(*client_point(driver, *point))
    actions.pointer_action.pointer_up()
    actions.perform()


def fill_enabled(driver: webdriver.Chrome) -> bool:
    return driver.find_element(By.ID, "fill").is_enabled()


def canvas_pixel(driver: webdriver.Chrome, x: float, y: float) -> np.ndarray:
    """The stage canvas's RGB at image position (x, y), once the pending repaint is done."""
    script = """
        const [x, y, done] = arguments;
        requestAnimationFrame(() => requestAnimationFrame(() => {
            const canvas = document.querySelector("#view");
            const rect = canvas.getBoundingClientRect();
            const point = window.inpaintkit.imageToClient(x, y);
            const ratio = canvas.width / rect.width;
            const pixel = canvas.getContext("2d").getImageData(
                Math.floor((point.x - rect.left) * ratio), Math.floor((point.y - rect.top) * ratio), 1, 1);
            done(Array.from(pixel.data.slice(0, 3)));
        }));"""
    return np.array(driver.execute_async_script(script, x, y), float)


def test_paint_fill_and_explore(page, photos: Path, tmp_path: Path) -> None:
    driver, url, client = page
    open_page(driver, url)
    paints = driver.execute_script("return performance.getEntriesByType('paint').map(e => e.name)")
    assert "first-contentful-paint" in paints
    photo = photos / "photos" / "cat.png"
    original = png_array(photo.read_bytes())

    # Open the photo through the file picker's input, paint with real mouse events.
    driver.find_element(By.ID, "file").send_keys(str(photo))
    wait_for_state(driver, "edit")
    assert not fill_enabled(driver)  # nothing painted: nothing to fill
    drag(driver, [tuple(p) for p in np.linspace(STROKE[0], STROKE[1], 7)])
    is_empty = "return window.inpaintkit.state.mask.isEmpty()"
    assert driver.execute_script(is_empty) is False and fill_enabled(driver)

    # Ctrl+Z takes the stroke back (Fill is disabled again), Ctrl+Shift+Z redoes it.
    ActionChains(driver).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
    assert driver.execute_script(is_empty) is True and not fill_enabled(driver)
    ActionChains(driver).key_down(Keys.CONTROL).key_down(Keys.SHIFT).send_keys("z") \
        .key_up(Keys.SHIFT).key_up(Keys.CONTROL).perform()  # fmt: skip
    assert driver.execute_script(is_empty) is False and fill_enabled(driver)

    # Enter fills, also while the Size list has the focus.
    driver.execute_script("document.querySelector('#size').focus()")
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    wait_for_state(driver, "result")
    # The whole result shows, and the slider says so; the estimate was measured here.
    assert driver.find_element(By.ID, "compare").get_attribute("value") == "100"
    assert driver.execute_script("return window.inpaintkit.state.compare") == 1
    assert re.search(r"Filled with deepfill in [\d.]+ s \(the fill itself [\d.]+ s, estimated [\d.]+ s\)",
                     driver.find_element(By.ID, "status").text)  # fmt: skip
    result_id = driver.execute_script("return window.inpaintkit.state.result.id")
    filled = png_array(client.get(f"/api/images/{result_id}/image.png").content)
    changed = (filled != original).any(axis=2)
    distance = distance_to_segment(*original.shape[:2], *STROKE)
    inside, outside = distance <= BRUSH / 2 - 2, distance >= BRUSH / 2 + 2
    assert changed[inside].mean() > 0.9, "the stroke was not filled"
    assert not changed[outside].any(), "pixels outside the stroke changed"

    # The attention explorer: the flow overlay, and hovering a filled pixel names the patch it
    # was borrowed from, as the server's offsets say.
    driver.find_element(By.CSS_SELECTOR, 'button[data-overlay="flow"]').click()
    hover = ActionBuilder(driver)
    hover.pointer_action.move_to_location(*client_point(driver, 100.5, 80.5))
    hover.perform()
    info = driver.find_element(By.ID, "attention-info").text
    found = re.search(r"\((\d+), (\d+)\) borrowed from .* around \((\d+), (\d+)\)", info)
    assert found, info
    grid = driver.execute_script(
        "const a = window.inpaintkit.state.result.attention; return [a.gridH, a.gridW]"
    )
    offsets = np.frombuffer(client.get(f"/api/images/{result_id}/offsets").content, "<i2").reshape(
        2, *grid
    )
    x, y = int(found[1]), int(found[2])
    h, w = offsets.shape[1:]
    dy, dx = offsets[:, y * h // 160, x * w // 240]
    assert (int(found[3]), int(found[4])) == (x + dx * 240 // w, y + dy * 160 // h)

    shot = tmp_path / "serve.png"
    driver.save_screenshot(str(shot))
    assert Image.open(shot).size[0] == 1280
    if os.environ.get("INPAINTKIT_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["INPAINTKIT_SCREENSHOT"])

    # A drag over the result moves the before/after line: the result on its left, the
    # photo and its painted mask on its right.
    drag(driver, [(200.5, 120.5), (150.5, 120.5), (90.5, 120.5)])
    assert abs(driver.execute_script("return window.inpaintkit.state.compare") - 90.5 / 240) < 0.02
    assert driver.find_element(By.ID, "compare").get_attribute("value") in ("37", "38")
    driver.execute_script("document.querySelector('button[data-overlay=\"none\"]').click()")
    tint = 0.45 * original[80, 150] + 0.55 * np.array([255, 40, 40])
    assert np.abs(canvas_pixel(driver, 150.5, 80.5) - tint).max() <= 4  # right: before
    assert np.abs(canvas_pixel(driver, 70.5, 80.5) - filled[80, 70]).max() <= 4  # left: after

    # Keep and continue: the result is the image now, with an empty mask (nothing to fill).
    driver.find_element(By.ID, "keep").click()
    wait_for_state(driver, "edit")
    assert driver.execute_script("return window.inpaintkit.state.image.id") == result_id
    assert driver.execute_script(is_empty) is True and not fill_enabled(driver)
    assert_no_script_errors(driver)


def test_folder_masks_are_edited_and_saved_back(page, photos: Path) -> None:
    driver, url, _ = page
    open_page(driver, url)
    items = driver.find_elements(By.CSS_SELECTOR, "#folder-list li")
    assert [item.get_attribute("data-path") for item in items] == ["cat.png", "cup.png"]
    assert "mask: cup_mask.png" in items[1].text and "no mask yet" in items[0].text

    # cat.png has no mask: no Fill until one is painted. Leaving it keeps the painted mask
    # (marked in the list), and opening it again brings the mask back.
    items[0].click()
    wait_for_state(driver, "edit")
    assert not fill_enabled(driver)
    drag(driver, [(40, 40), (120, 40)])
    assert fill_enabled(driver)

    items[1].click()
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return window.inpaintkit.state.image.path") == "cup.png"
    )
    assert driver.execute_script("return !window.inpaintkit.state.mask.isEmpty()")
    assert fill_enabled(driver)  # its mask file is a hole to fill
    assert "unsaved" in items[0].get_attribute("class")
    ActionChains(driver).send_keys("r").perform()  # the rectangle tool
    drag(driver, [(150, 100), (200, 140)])
    driver.find_element(By.ID, "save-mask").click()
    WebDriverWait(driver, 30).until(
        lambda d: "Saved cup_mask.png" in d.find_element(By.ID, "status").text
    )
    saved = np.asarray(Image.open(photos / "photos" / "cup_mask.png")) > 127
    assert saved[20:50, 20:60].all() and saved[102:138, 152:198].all()
    assert saved.sum() < 30 * 40 + 52 * 42  # nothing else

    driver.find_elements(By.CSS_SELECTOR, "#folder-list li")[0].click()
    WebDriverWait(driver, 30).until(
        lambda d: (
            "the mask you painted on it before is back" in d.find_element(By.ID, "status").text
        )
    )
    assert driver.execute_script("return window.inpaintkit.state.image.path") == "cat.png"
    assert driver.execute_script("return !window.inpaintkit.state.mask.isEmpty()")
    assert fill_enabled(driver)
    assert_no_script_errors(driver)
