"""Latency of ``inpaintkit serve``: request to result for a 512² photo with a 128² hole, and first paint.

The server runs in this process (uvicorn on 127.0.0.1, in a thread) and is asked over HTTP by
httpx, as the page asks it: *request to result* is POST ``/api/fill`` with the mask PNG,
long-poll ``/api/jobs/ID`` until done, GET the result PNG, and (what the page also fetches)
the attention offsets. It is compared with a bare ``inpaint(generator, image, mask,
return_offsets=True)`` call in the same process on the same generator, precision and memory
format as the server's (``DeepFillMethod``). The issue's target: server ≤ 1.2 × bare + 50 ms.

The page: headless Chromium (Selenium, the system's chromium + chromedriver) opens it
repeatedly; first-contentful-paint from the Performance API, and "ready" when the page has
its method list from ``/api/info`` (the ``inpaintkit-ready`` mark).

    python benchmarks/bench_serve.py                    # default model if packaged, else random-init
    python benchmarks/bench_serve.py --repeats 5 --page-repeats 3
    python benchmarks/bench_serve.py --device cuda
"""

from __future__ import annotations

import argparse
import io
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image
from skimage import data

from inpaintkit.checkpoint import default_checkpoint, save_generator
from inpaintkit.inpaint import inpaint
from inpaintkit.methods import PRECISIONS
from inpaintkit.model.generator import Generator, GeneratorConfig
from inpaintkit.serve import create_app
from inpaintkit.serve.server import BackgroundServer, open_socket
from inpaintkit.tensors import image_to_tensor, mask_to_tensor


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def bare_call(method, image: torch.Tensor, mask: torch.Tensor) -> float:
    """Seconds for one ``inpaint()`` as the server's DeepFillMethod sets it up."""
    if method.channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
        mask = mask.contiguous(memory_format=torch.channels_last)
    start = time.perf_counter()
    inpaint(
        method.generator,
        image,
        mask,
        return_offsets=True,
        autocast_dtype=PRECISIONS[method.precision],
    )
    if method.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def server_call(client: httpx.Client, image_id: str, mask_png: bytes) -> tuple[float, float, float]:
    """``(to the result PNG, plus the offsets, the fill itself on the server)`` in seconds."""
    start = time.perf_counter()
    job = client.post(f"/api/fill?image={image_id}&method=deepfill", content=mask_png).json()
    while job["state"] in ("queued", "running"):
        job = client.get(f"/api/jobs/{job['id']}?wait=30").json()
    if job["state"] != "done":
        raise SystemExit(f"fill failed: {job['error']}")
    result = job["result"]["id"]
    client.get(f"/api/images/{result}/image.png").raise_for_status()
    to_image = time.perf_counter() - start
    client.get(f"/api/images/{result}/offsets").raise_for_status()
    return to_image, time.perf_counter() - start, job["elapsed"]


def page_timings(url: str, repeats: int) -> list[tuple[float, float]] | None:
    """``(first contentful paint, ready)`` in ms per fresh page load, or None without Chromium."""
    chromium, driver_path = (
        shutil.which("chromium") or shutil.which("google-chrome"),
        shutil.which("chromedriver"),
    )
    if chromium is None or driver_path is None:
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    timings = []
    try:
        for _ in range(repeats + 1):  # the first load warms the browser's own caches: not counted
            driver.get("about:blank")
            driver.get(url)
            # The paint entry is reported a little after the paint: wait for both.
            timings.append(WebDriverWait(driver, 30).until(lambda d: d.execute_script(
                "const [p, r] = ['first-contentful-paint', 'inpaintkit-ready']"
                "  .map(name => performance.getEntriesByName(name)[0]);"
                "return p && r ? [p.startTime, r.startTime] : null"
            )))  # fmt: skip
    finally:
        driver.quit()
    return timings[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", type=Path, help="generator (default: the packaged model, else random-init)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--hole", type=int, default=128)
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed fills of each kind (after one warm-up)"
    )
    parser.add_argument(
        "--page-repeats", type=int, default=5, help="page loads timed in Chromium (0: none)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    picture = np.asarray(
        Image.fromarray(data.astronaut()).resize((args.size, args.size), Image.Resampling.LANCZOS)
    )
    hole = np.zeros((args.size, args.size), bool)
    top = (args.size - args.hole) // 2
    hole[top : top + args.hole, top : top + args.hole] = True

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, weights = args.checkpoint or default_checkpoint(), "given checkpoint"
        if args.checkpoint is None:
            weights = "the packaged default model"
        if checkpoint is None:
            torch.manual_seed(0)
            checkpoint = Path(tmp) / "random.safetensors"
            save_generator(checkpoint, Generator(GeneratorConfig()))
            weights = (
                "randomly initialised GeneratorConfig() (speed does not depend on the weights)"
            )
        sock = open_socket("127.0.0.1", 0)
        app = create_app(checkpoint=checkpoint, device=args.device, port=sock.getsockname()[1])
        method = app.state.serve.methods["deepfill"]
        image, mask = image_to_tensor(picture), mask_to_tensor(hole)
        with BackgroundServer(app, sock) as url, httpx.Client(base_url=url, timeout=120) as client:
            image_id = client.post("/api/images?name=astronaut.png", content=png(picture)).json()[
                "id"
            ]
            mask_png = png(hole.astype(np.uint8) * 255)
            bare_call(method, image, mask)  # warm-up: allocations, kernel selection
            server_call(client, image_id, mask_png)
            bare, served = [], []
            for _ in range(args.repeats):  # interleaved, so load changes hit both alike
                bare.append(bare_call(method, image, mask))
                served.append(server_call(client, image_id, mask_png))
            pages = page_timings(url, args.page_repeats) if args.page_repeats else None

    b = statistics.median(bare)
    to_image, with_offsets, on_server = (statistics.median(s[i] for s in served) for i in range(3))
    target = 1.2 * b + 0.05
    print("## serve latency\n")
    print(
        f"- machine: {platform.node()}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch CPU threads, torch {torch.__version__}, Python {platform.python_version()}"
    )
    print(f"- command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`")
    print(
        f"- {args.size}x{args.size} photo, one {args.hole}x{args.hole} centred hole; device {method.device}, "
        f"precision {method.precision}; weights: {weights}; medians of {args.repeats} after one warm-up\n"
    )
    print("| path | median (ms) | vs bare |")
    print("|---|---|---|")
    print(f"| bare `inpaint(..., return_offsets=True)` | {1000 * b:.0f} | 1.00x |")
    print(
        f"| server: the fill on the worker thread | {1000 * on_server:.0f} | {on_server / b:.2f}x |"
    )
    print(f"| server: request to result PNG | {1000 * to_image:.0f} | {to_image / b:.2f}x |")
    print(
        f"| server: request to result PNG + offsets | {1000 * with_offsets:.0f} | {with_offsets / b:.2f}x |"
    )
    verdict = "met" if with_offsets <= target else "MISSED"
    print(
        f"\nTarget ≤ 1.2 × bare + 50 ms = {1000 * target:.0f} ms: {verdict} "
        f"(overhead {1000 * (with_offsets - b):+.0f} ms)."
    )
    if pages:
        fcp, ready = statistics.median(p[0] for p in pages), statistics.median(p[1] for p in pages)
        print(
            f"\nPage (headless Chromium, median of {len(pages)} loads): first contentful paint "
            f"{fcp:.0f} ms, ready (methods listed) {ready:.0f} ms after navigation start."
        )
    else:
        print(
            "\nPage timings need Chromium and chromedriver (apt-get install chromium chromium-driver)."
        )


if __name__ == "__main__":
    main()
