"""``inpaintkit serve``'s API, in process: fills, attention, limits, the local-only guard, folder mode.

The browser end of it is tests/test_serve_browser.py.
"""

from __future__ import annotations

import asyncio
import io
import re
import signal
import socket
import subprocess
import threading
import time
import warnings
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import child_env, cli_argv
from PIL import Image
from skimage import data

pytest.importorskip(
    "starlette", reason='the serve extra is not installed (pip install -e ".[serve]")'
)
pytest.importorskip("httpx")

# The optional packages are checked (and the module skipped) before they are imported.
# ruff: noqa: E402
import httpx
from starlette.datastructures import Headers

with warnings.catch_warnings():
    # Starlette 1.9+ prefers the httpx2 fork (Python 3.11+ only); httpx serves the same here.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

import inpaintkit.checkpoint
import inpaintkit.methods
import inpaintkit.serve.server
from inpaintkit.checkpoint import NO_DEFAULT_MODEL, CheckpointError, save_generator
from inpaintkit.cli import main
from inpaintkit.fill_images import attention_pictures
from inpaintkit.fill_plan import pair_files
from inpaintkit.io import is_temporary
from inpaintkit.methods import DeepFillMethod
from inpaintkit.model.generator import Generator, GeneratorConfig
from inpaintkit.model.visualize import flow_legend
from inpaintkit.serve import create_app
from inpaintkit.serve.estimate import FillTimes
from inpaintkit.serve.guard import LocalOnly
from inpaintkit.serve.jobs import DONE, FAILED, QUEUED, RUNNING, FillQueue
from inpaintkit.serve.routes import STATIC
from inpaintkit.serve.server import BackgroundServer, is_loopback, open_socket, server_names
from inpaintkit.serve.store import ImageStore, StoredImage
from inpaintkit.tensors import image_to_tensor, mask_to_tensor, tensor_to_image

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_generator(path, Generator(GeneratorConfig(channels=4)))
    return path


def photo(h: int = 48, w: int = 64) -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[100 : 100 + h, 150 : 150 + w])


def hole(h: int = 48, w: int = 64) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[12:30, 20:44] = True
    return mask


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def decoded(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


@pytest.fixture
def client(checkpoint: Path):
    app = create_app(checkpoint=checkpoint, device="cpu", port=8000)
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


def upload(client: TestClient, pixels: np.ndarray, name: str = "photo.png") -> dict:
    answer = client.post(f"/api/images?name={name}", content=png(pixels))
    assert answer.status_code == 201, answer.text
    return answer.json()


def fill_and_wait(
    client: TestClient, image_id: str, mask: np.ndarray, method: str = "deepfill", extra: str = ""
) -> dict:
    answer = client.post(f"/api/fill?image={image_id}&method={method}{extra}", content=png(mask))
    assert answer.status_code == 202, answer.text
    job = answer.json()
    deadline = time.monotonic() + 120
    while job["state"] in (QUEUED, RUNNING):
        assert time.monotonic() < deadline
        job = client.get(f"/api/jobs/{job['id']}?wait=5").json()
    return job


# --------------------------------------------------------------------------- the page


def test_the_page_and_every_asset_it_names_are_served_from_the_package(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text))
    todo, seen = list(assets), set()
    while todo:  # follow the JS modules' imports
        url = todo.pop()
        seen.add(url)
        answer = client.get(url)
        assert answer.status_code == 200, url
        if url.endswith(".js"):
            assert "javascript" in answer.headers["content-type"]
            for name in re.findall(r'from "\./([^"]+)"', answer.text):
                if f"/static/js/{name}" not in seen:
                    todo.append(f"/static/js/{name}")
    assert {
        "/static/style.css",
        "/static/js/main.js",
        "/static/js/mask.js",
        "/static/js/attention.js",
    } <= seen
    # Offline: nothing refers to another site.
    for path in STATIC.rglob("*"):
        if path.is_file():
            assert not re.search(r"https?://", path.read_text()), path


def test_the_colour_wheel_legend_is_the_library_s(client: TestClient) -> None:
    answer = client.get("/api/colorwheel.png?size=48")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(decoded(answer.content), flow_legend(48))


def test_every_static_file_ships_as_package_data() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["inpaintkit"]
    package = STATIC.parents[1]
    for path in STATIC.rglob("*"):
        if path.is_file():
            relative = path.relative_to(package).as_posix()
            assert any(fnmatch(relative, pattern) for pattern in patterns), relative


def test_info_lists_both_methods(client: TestClient) -> None:
    info = client.get("/api/info").json()
    assert [m["name"] for m in info["methods"]] == ["deepfill", "patchmatch"]
    assert all(m["available"] for m in info["methods"])
    assert info["methods"][0]["label"] == "DeepFill (tiny.safetensors)"
    assert info["folder"] is None and info["device"] == "cpu"


# --------------------------------------------------------------------------- filling


def test_a_fill_is_deepfill_with_offsets_as_the_library_computes_it(
    client: TestClient, checkpoint: Path
) -> None:
    pixels, mask = photo(), hole()
    image = upload(client, pixels)
    assert (image["width"], image["height"], image["attention"]) == (64, 48, None)
    assert (decoded(client.get(f"/api/images/{image['id']}/image.png").content) == pixels).all()

    job = fill_and_wait(client, image["id"], mask)
    assert job["state"] == DONE and job["error"] is None
    result = job["result"]
    assert result["attention"] == {"grid": [12, 16], "work": [48, 64], "patch": 24}
    served = decoded(client.get(f"/api/images/{result['id']}/image.png").content)

    # The same call `inpaintkit fill` makes, on the same checkpoint.
    method = DeepFillMethod(checkpoint, device="cpu")
    filled, offsets = method.fill_with_offsets(image_to_tensor(pixels), mask_to_tensor(mask))
    expected = tensor_to_image(filled)[0]
    np.testing.assert_array_equal(served, expected)
    np.testing.assert_array_equal(served[~mask], pixels[~mask])  # known pixels bit-exact

    raw = client.get(f"/api/images/{result['id']}/offsets")
    assert raw.headers["content-type"] == "application/octet-stream"
    served_offsets = np.frombuffer(raw.content, "<i2").reshape(2, 12, 16)
    np.testing.assert_array_equal(served_offsets, offsets[0].numpy())

    flow, overlay = attention_pictures(expected, offsets[0].numpy(), mask)
    flow_png = decoded(client.get(f"/api/images/{result['id']}/flow.png").content)
    np.testing.assert_array_equal(flow_png[..., :3][mask], flow[mask])
    np.testing.assert_array_equal(flow_png[..., 3], np.where(mask, 255, 0))
    np.testing.assert_array_equal(
        decoded(client.get(f"/api/images/{result['id']}/overlay.png").content), overlay
    )


def test_keep_and_continue_fills_a_result_again(client: TestClient) -> None:
    first = fill_and_wait(client, upload(client, photo())["id"], hole())["result"]
    second_hole = np.zeros((48, 64), bool)
    second_hole[36:44, 4:12] = True
    second = fill_and_wait(client, first["id"], second_hole)["result"]
    before = decoded(client.get(f"/api/images/{first['id']}/image.png").content)
    after = decoded(client.get(f"/api/images/{second['id']}/image.png").content)
    np.testing.assert_array_equal(after[~second_hole], before[~second_hole])


def test_patchmatch_fills_without_attention(client: TestClient) -> None:
    pixels, mask = photo(), hole()
    job = fill_and_wait(client, upload(client, pixels)["id"], mask, method="patchmatch")
    assert job["state"] == DONE and job["result"]["attention"] is None
    served = decoded(client.get(f"/api/images/{job['result']['id']}/image.png").content)
    np.testing.assert_array_equal(served[~mask], pixels[~mask])
    assert (served[mask] != pixels[mask]).any()
    answer = client.get(f"/api/images/{job['result']['id']}/flow.png")
    assert answer.status_code == 404 and "no attention map" in answer.json()["error"]


def test_max_size_fills_at_a_working_size_and_pastes_back(client: TestClient) -> None:
    pixels, mask = photo(), hole()
    image = upload(client, pixels)
    job = fill_and_wait(client, image["id"], mask, extra="&max_size=32")
    assert job["result"]["attention"]["work"] == [24, 32]
    served = decoded(client.get(f"/api/images/{job['result']['id']}/image.png").content)
    assert served.shape == pixels.shape
    np.testing.assert_array_equal(served[~mask], pixels[~mask])


# --------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not an image at all", 400, "bad.png: not a readable image (cannot identify image file)"),
        (b"", 400, "empty upload"),
        (png(photo())[:200], 400, "bad.png: not a readable image"),
    ],
)
def test_bad_uploads_get_a_4xx_with_a_message(
    client: TestClient, body: bytes, status: int, message: str
) -> None:
    answer = client.post("/api/images?name=bad.png", content=body)
    assert answer.status_code == status
    assert answer.json()["error"].startswith(message)


def test_upload_limits_bytes_and_pixels(checkpoint: Path) -> None:
    app = create_app(
        checkpoint=checkpoint, device="cpu", max_upload_bytes=20_000, max_pixels=100_000
    )
    with TestClient(app, base_url=BASE) as client:
        noise = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
        answer = client.post("/api/images", content=png(noise))
        assert answer.status_code == 413 and "the limit is" in answer.json()["error"]
        # A small file that decodes to many pixels: refused from its header, never decoded.
        bomb = png(np.zeros((1000, 1000), np.uint8))
        assert len(bomb) < 20_000
        answer = client.post("/api/images?name=bomb.png", content=bomb)
        assert answer.status_code == 400
        assert (
            "exceeds the 100000-pixel limit (possible decompression bomb)" in answer.json()["error"]
        )


def test_bad_fill_requests_get_a_4xx_with_a_message(client: TestClient) -> None:
    image = upload(client, photo())["id"]
    cases = [
        (f"image={image}&method=deepfill", png(np.zeros((48, 64), bool)), 400, "the mask is empty"),
        (
            f"image={image}&method=deepfill",
            png(hole(40, 64)),
            400,
            "the mask is 64x40 but the image is 64x48",
        ),
        (f"image={image}&method=deepfill", b"junk", 400, "mask: not a readable image"),
        (f"image={image}&method=lama", png(hole()), 400, "unknown method 'lama'"),
        (f"image={image}&method=deepfill&max_size=3", png(hole()), 400, "max_size must be"),
        ("image=nope&method=deepfill", png(hole()), 404, "no longer held by the server"),
    ]
    for query, body, status, message in cases:
        answer = client.post(f"/api/fill?{query}", content=body)
        assert answer.status_code == status and message in answer.json()["error"], (
            query,
            answer.text,
        )
    assert client.get("/api/jobs/12345").status_code == 404
    assert client.get("/api/jobs/12345").json()["error"].startswith("no such fill")
    assert client.get("/api/nothing-here").json() == {"error": "Not Found"}


# --------------------------------------------------------------------------- the model


def test_without_a_checkpoint_the_default_model_is_used(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inpaintkit.checkpoint, "default_checkpoint", lambda: checkpoint)
    with TestClient(create_app(device="cpu"), base_url=BASE) as client:
        methods = client.get("/api/info").json()["methods"]
        assert methods[0] == {
            "name": "deepfill",
            "label": "DeepFill (default model)",
            "available": True,
            "reason": None,
        }
        assert fill_and_wait(client, upload(client, photo())["id"], hole())["state"] == DONE


def test_without_the_default_model_deepfill_says_why_and_patchmatch_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inpaintkit.checkpoint, "default_checkpoint", lambda: None)
    with TestClient(create_app(device="cpu"), base_url=BASE) as client:
        deepfill = client.get("/api/info").json()["methods"][0]
        assert deepfill["available"] is False and deepfill["reason"] == NO_DEFAULT_MODEL
        assert deepfill["label"] == "DeepFill (default model)"
        image = upload(client, photo())["id"]
        answer = client.post(f"/api/fill?image={image}&method=deepfill", content=png(hole()))
        assert answer.status_code == 400 and answer.json()["error"] == NO_DEFAULT_MODEL
        assert fill_and_wait(client, image, hole(), method="patchmatch")["state"] == DONE


def test_a_bad_checkpoint_stops_the_app_from_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(CheckpointError, match="pickle"):
        create_app(checkpoint=bad, device="cpu")


# --------------------------------------------------------------------------- local only


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"host": "127.0.0.1:8000"}, True),
        ({"host": "localhost:8000", "origin": "http://localhost:8000"}, True),
        ({"host": "[::1]:8000", "origin": "http://[::1]:8000"}, True),
        ({"host": "LOCALHOST:8000"}, True),
        ({"host": "evil.example:8000"}, False),  # DNS rebinding: the attacker's name
        ({"host": "127.0.0.1:9999"}, False),
        ({"host": "127.0.0.1"}, False),  # port 80
        ({}, False),
        ({"host": "127.0.0.1:8000@evil.example"}, False),
        ({"host": "127.0.0.1:8000", "origin": "http://evil.example"}, False),
        ({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:9999"}, False),
        ({"host": "127.0.0.1:8000", "origin": "null"}, False),
        (
            {"host": "127.0.0.1:8000", "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"},
            False,
        ),
        (
            {
                "host": "127.0.0.1:8000",
                "sec-fetch-site": "cross-site",
                "sec-fetch-mode": "navigate",
            },
            True,
        ),
        (
            {"host": "127.0.0.1:8000", "sec-fetch-site": "same-origin", "sec-fetch-mode": "cors"},
            True,
        ),
    ],
)
def test_only_this_servers_own_names_and_origin_are_served(
    headers: dict[str, str], allowed: bool
) -> None:
    guard = LocalOnly(None, hosts=("127.0.0.1", "localhost", "::1"), port=8000)
    assert (guard.refusal(Headers(headers)) is None) == allowed


def test_foreign_requests_are_refused_before_any_route_runs(client: TestClient) -> None:
    answer = client.get("/api/info", headers={"Host": "attacker.example:8000"})
    assert answer.status_code == 403 and "DNS-rebinding" in answer.json()["error"]
    answer = client.post(
        "/api/images", content=png(photo()), headers={"Origin": "http://attacker.example"}
    )
    assert answer.status_code == 403 and "attacker.example" in answer.json()["error"]
    answer = client.post("/api/images", content=png(photo()), headers={"Origin": BASE})
    assert answer.status_code == 201


def test_a_real_server_listens_on_loopback_and_guards_its_host(checkpoint: Path) -> None:
    sock = open_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = create_app(checkpoint=checkpoint, device="cpu", port=port)
    with BackgroundServer(app, sock) as url:
        assert url == f"http://127.0.0.1:{port}/"
        assert httpx.get(url + "api/info").status_code == 200
        assert (
            httpx.get(url + "api/info", headers={"Host": f"rebound.example:{port}"}).status_code
            == 403
        )


def test_the_listening_socket_says_tcp_so_responses_are_not_delayed() -> None:
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; without it every
    # keep-alive response waited ~40 ms for a delayed ACK (docs/benchmarks.md, serve latency).
    sock = open_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_server_names_and_loopback() -> None:
    assert (
        is_loopback("127.0.0.1")
        and is_loopback("localhost")
        and is_loopback("::1")
        and is_loopback("[::1]")
    )
    assert (
        not is_loopback("0.0.0.0")
        and not is_loopback("192.168.1.5")
        and not is_loopback("example.org")
    )
    assert server_names("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert {"192.168.1.5", "box.lan"} <= server_names("192.168.1.5", ["Box.lan"])


# --------------------------------------------------------------------------- the queue


class GatedMethod:
    """A fake method: records its batch sizes, waits for ``gate``, fails on a black image."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.batches: list[int] = []
        self.running = 0
        self.most_at_once = 0

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.batches.append(len(images))
        self.gate.wait(30)
        self.running -= 1
        if (images.flatten(1) == -1).all(dim=1).any():
            raise RuntimeError("a black image")
        return torch.where(masks > 0.5, torch.zeros_like(images), images)


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_the_queue_runs_fills_one_at_a_time_in_order() -> None:
    method = GatedMethod()
    queue = FillQueue({"gated": method}, ImageStore())
    try:
        jobs = [queue.submit("gated", photo(), hole(), f"{i}.png") for i in range(3)]
        wait_until(lambda: jobs[0].state == RUNNING)
        assert [j.state for j in jobs] == [RUNNING, QUEUED, QUEUED]
        assert [queue.ahead(j) for j in jobs] == [0, 1, 2]
        method.gate.set()
        wait_until(lambda: all(j.final for j in jobs))
        assert (
            [j.state for j in jobs] == [DONE] * 3
            and method.most_at_once == 1
            and method.batches == [1, 1, 1]
        )
        assert jobs[0].finished <= jobs[1].started and jobs[1].finished <= jobs[2].started
        assert jobs[2].estimate is not None  # measured on the first fill
    finally:
        method.gate.set()
        queue.close()


def test_the_queue_batches_same_size_fills_and_only_the_culprit_fails() -> None:
    method = GatedMethod()
    store = ImageStore()
    queue = FillQueue({"gated": method}, store, batch_size=4)
    try:
        first = queue.submit("gated", photo(), hole(), "first.png")
        wait_until(lambda: first.state == RUNNING)
        black = np.zeros((48, 64, 3), np.uint8)
        same = [
            queue.submit("gated", pixels, hole(), f"{i}.png")
            for i, pixels in enumerate([photo(), black, photo()])
        ]
        other = queue.submit("gated", photo(32, 32), hole(32, 32), "small.png")
        method.gate.set()
        wait_until(lambda: all(j.final for j in [first, *same, other]))
        # first alone; the three same-size ones as one batch, retried one by one after the
        # failure; the other size on its own.
        assert method.batches == [1, 3, 1, 1, 1, 1]
        assert [j.state for j in same] == [DONE, FAILED, DONE] and other.state == DONE
        assert same[1].error == "inpainting failed: RuntimeError: a black image"
        filled = store.get(same[0].result)
        assert isinstance(filled, StoredImage) and (filled.pixels[hole()] == 128).all()
    finally:
        method.gate.set()
        queue.close()


def test_waiting_for_a_job_returns_as_soon_as_it_changes() -> None:
    method = GatedMethod()
    queue = FillQueue({"gated": method}, ImageStore())
    try:
        job = queue.submit("gated", photo(), hole(), "a.png")
        wait_until(lambda: job.state == RUNNING)

        async def wait_and_time() -> float:
            start = time.monotonic()
            threading.Timer(0.2, method.gate.set).start()
            await queue.wait(job, 20)
            return time.monotonic() - start

        assert asyncio.run(wait_and_time()) < 5 and job.state == DONE
    finally:
        method.gate.set()
        queue.close()


def test_the_page_gets_answers_while_a_fill_runs(client: TestClient) -> None:
    method = GatedMethod()
    client.app.state.serve.queue.methods["patchmatch"] = method
    try:
        image = upload(client, photo())["id"]
        job = client.post(f"/api/fill?image={image}&method=patchmatch", content=png(hole())).json()
        second = client.post(
            f"/api/fill?image={image}&method=patchmatch", content=png(hole())
        ).json()
        wait_until(lambda: client.get(f"/api/jobs/{job['id']}").json()["state"] == RUNNING)
        start = time.monotonic()
        assert client.get("/api/info").status_code == 200
        waited = client.get(f"/api/jobs/{second['id']}?wait=0.2").json()
        assert waited["state"] == QUEUED and waited["ahead"] == 1
        assert time.monotonic() - start < 5
    finally:
        method.gate.set()


# --------------------------------------------------------------------------- folder mode


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """FOLDER with masks paired every way fill pairs them, and a secret outside it."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(photo()).save(root / "a.png")
    Image.fromarray(hole()).save(root / "a_mask.png")
    Image.fromarray(photo()).save(root / "b.jpg", quality=95)
    Image.fromarray(photo()).save(root / "sub" / "c.png")
    Image.fromarray(hole()).save(root / "sub" / "c_mask.png")
    Image.fromarray(photo()).save(root / "x.jpg")
    Image.fromarray(hole().astype(np.uint8) * 255).save(root / "x_mask.jpg")
    Image.fromarray(photo()).save(root / "y.png")
    Image.fromarray(hole()).save(root / "y_mask.png")
    Image.fromarray(hole()).save(root / "y_mask.bmp")  # two masks: fill refuses y.png
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(photo()).save(outside / "secret.png")
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    return root


@pytest.fixture
def folder_client(folder: Path, checkpoint: Path):
    with TestClient(
        create_app(folder, checkpoint, device="cpu", port=8000), base_url=BASE
    ) as test_client:
        yield test_client


def test_folder_lists_images_with_masks_paired_as_fill_pairs_them(
    folder_client: TestClient, folder: Path
) -> None:
    listing = folder_client.get("/api/folder").json()
    assert (
        listing["name"] == "photos" and folder_client.get("/api/info").json()["folder"] == "photos"
    )
    items = {item["path"]: item["mask"] for item in listing["items"]}
    assert items == {
        "a.png": "a_mask.png",
        "b.jpg": None,
        "sub/c.png": "sub/c_mask.png",
        "x.jpg": "x_mask.jpg",
        "y.png": None,
    }
    problems = {item["path"]: item["problem"] for item in listing["items"]}
    assert problems["y.png"].startswith("several masks match") and problems["b.jpg"].startswith(
        "no mask found"
    )
    jobs = pair_files(folder, folder, folder.parent / "out")
    paired = {job.relative.as_posix(): job.mask.relative_to(folder).as_posix() if job.mask else None for job in jobs
              if not job.image.resolve().is_relative_to(folder.parent / "outside")}  # fmt: skip
    assert items == paired
    thumb = folder_client.get("/api/folder/thumb?path=a.png")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


def test_folder_mask_round_trip_is_saved_where_fill_finds_it(
    folder_client: TestClient, folder: Path
) -> None:
    opened = folder_client.post("/api/folder/open?path=sub/c.png").json()
    assert (opened["width"], opened["height"], opened["path"]) == (64, 48, "sub/c.png")
    mask = decoded(folder_client.get("/api/folder/mask?path=sub/c.png").content)
    np.testing.assert_array_equal(mask > 127, hole())
    assert folder_client.get("/api/folder/mask?path=b.jpg").status_code == 404

    new = np.zeros((48, 64), bool)
    new[5:15, 5:25] = True
    answer = folder_client.put("/api/folder/mask?path=b.jpg", content=png(new))
    assert answer.json() == {"saved": "b_mask.png"}
    np.testing.assert_array_equal(np.asarray(Image.open(folder / "b_mask.png")) > 127, new)
    # Overwriting the mask that is already <stem>_mask.png is fine.
    assert folder_client.put("/api/folder/mask?path=sub/c.png", content=png(new)).json() == {
        "saved": "sub/c_mask.png"
    }
    assert not [p for p in folder.rglob("*") if is_temporary(p)]
    masks = {
        job.relative.as_posix(): job.mask
        for job in pair_files(folder, folder, folder.parent / "out")
    }
    assert masks["b.jpg"] == folder / "b_mask.png"


def test_folder_refuses_a_second_mask_and_a_wrong_size(
    folder_client: TestClient, folder: Path
) -> None:
    answer = folder_client.put("/api/folder/mask?path=x.jpg", content=png(hole()))
    assert (
        answer.status_code == 409
        and "x_mask.jpg already is this image's mask" in answer.json()["error"]
    )
    answer = folder_client.put("/api/folder/mask?path=y.png", content=png(hole()))
    assert answer.status_code == 409 and "several masks match" in answer.json()["error"]
    assert folder_client.get("/api/folder/mask?path=y.png").status_code == 409
    assert not (folder / "x_mask.png").exists()
    answer = folder_client.put("/api/folder/mask?path=b.jpg", content=png(hole(40, 64)))
    assert (
        answer.status_code == 400
        and "the mask is 64x40 but the image is 64x48" in answer.json()["error"]
    )


@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.png",
        "sub/../../outside/secret.png",
        "a.png/../../outside/secret.png",
        "link.png",
        "linked/secret.png",
        "",
        "sub\\..\\a.png",
        "/etc/passwd",
    ],  # fmt: skip
)
def test_folder_never_reads_or_writes_outside_folder(
    folder_client: TestClient, folder: Path, path: str
) -> None:
    absolute = str(folder.parent / "outside" / "secret.png")
    for name in (path, absolute) if path == "/etc/passwd" else (path,):
        for method, url in (("POST", "/api/folder/open"), ("GET", "/api/folder/mask"),
                            ("GET", "/api/folder/thumb"), ("PUT", "/api/folder/mask")):  # fmt: skip
            answer = folder_client.request(
                method, url, params={"path": name}, content=png(hole()) if method == "PUT" else None
            )
            assert answer.status_code in (400, 404), (method, url, name, answer.text)
            assert answer.json()["error"]
    assert sorted(p.name for p in (folder.parent / "outside").iterdir()) == ["secret.png"]
    listed = [item["path"] for item in folder_client.get("/api/folder").json()["items"]]
    assert "link.png" not in listed and not any(p.startswith("linked/") for p in listed)


def test_folder_does_not_write_through_a_mask_link_leading_out(
    folder_client: TestClient, folder: Path
) -> None:
    outside = folder.parent / "outside" / "secret.png"
    before = outside.read_bytes()
    (folder / "a_mask.png").unlink()
    (folder / "a_mask.png").symlink_to(outside)
    listing = {i["path"]: i for i in folder_client.get("/api/folder").json()["items"]}
    assert listing["a.png"]["mask"] is None and "outside the folder" in listing["a.png"]["problem"]
    answer = folder_client.put("/api/folder/mask?path=a.png", content=png(hole()))
    assert answer.status_code == 409
    assert outside.read_bytes() == before


def test_not_in_folder_mode_the_folder_routes_say_so(client: TestClient) -> None:
    answer = client.get("/api/folder")
    assert answer.status_code == 404 and "inpaintkit serve FOLDER" in answer.json()["error"]


# --------------------------------------------------------------------------- the command


def test_the_command_prints_its_address_and_warns_off_loopback(
    checkpoint: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = []

    def run(app, sock, on_stop=None) -> None:  # instead of serving until Ctrl-C
        served.append(app)
        app.state.serve.queue.close()
        sock.close()

    monkeypatch.setattr(inpaintkit.serve.server, "run", run)
    # No start-up measurement: this test ends the server before it would be needed.
    monkeypatch.setattr(FillTimes, "calibrate", lambda self, method, fill: None)
    result = CliRunner().invoke(
        main, ["serve", str(folder), "--checkpoint", str(checkpoint), "--port", "0", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert (
        re.search(r"inpaintkit serve: http://127\.0\.0\.1:\d+/", result.stdout)
        and "warning" not in result.output
    )
    result = CliRunner().invoke(
        main, ["serve", "--checkpoint", str(checkpoint), "--host", "0.0.0.0", "--port", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "warning: listening on 0.0.0.0, not only on this machine" in result.stderr
    assert len(served) == 2


def test_the_real_command_stops_at_once_on_ctrl_c_and_says_so(checkpoint: Path) -> None:
    # Ctrl-C in a terminal: SIGINT with its default handling (a background job ignores it).
    child = subprocess.Popen(
        cli_argv("serve", "--checkpoint", checkpoint, "--port", "0", "--quiet"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    polled = []
    try:
        line = child.stdout.readline()
        url = re.fullmatch(
            r"inpaintkit serve: (http://127\.0\.0\.1:\d+/)  \(Ctrl-C to stop\)\n", line
        )
        assert url, line
        with httpx.Client(base_url=url[1], timeout=60) as web:
            assert web.get("api/info").json()["methods"][0]["available"]
            # A fill of several seconds under way, and a request waiting on it.
            big = np.asarray(Image.fromarray(data.astronaut()).resize((1024, 1024)))
            image = web.post("api/images?name=big.png", content=png(big)).json()["id"]
            mask = np.zeros((1024, 1024), bool)
            mask[256:768, 256:768] = True
            job = web.post(f"api/fill?image={image}&method=patchmatch", content=png(mask)).json()
            wait_until(lambda: web.get(f"api/jobs/{job['id']}").json()["state"] == RUNNING, 60)
        poll = threading.Thread(
            target=lambda: polled.append(httpx.get(f"{url[1]}api/jobs/{job['id']}?wait=30", timeout=60))
        )  # fmt: skip
        poll.start()
        time.sleep(0.3)
        start = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
        stopped = time.monotonic() - start
        poll.join(60)
    finally:
        child.kill()
    assert (
        child.returncode == 0 and err == "inpaintkit serve: stopped (a fill was left unfinished)\n"
    )
    assert stopped < 2.0, f"{stopped:.2f} s from Ctrl-C to exit"
    assert polled and polled[0].json()["state"] == RUNNING  # answered, not cut off


def test_the_command_fails_in_one_line(checkpoint: Path, tmp_path: Path) -> None:
    taken = open_socket("127.0.0.1", 0)
    try:
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(
            main, ["serve", "--checkpoint", str(checkpoint), "--port", port]
        )
        assert result.exit_code == 1
        assert (
            f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; pass --port N"
            in result.output
        )
    finally:
        taken.close()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"PK\x03\x04zip")
    result = CliRunner().invoke(main, ["serve", "--checkpoint", str(bad), "--port", "0"])
    assert (
        result.exit_code == 1
        and result.output.startswith("Error: ")
        and len(result.output.splitlines()) == 1
    )
