"""Seconds from Ctrl-C to exit of the real ``inpaintkit serve``, and what it says.

Three cases, each a fresh ``inpaintkit serve --device cpu`` (the default model) in a child
process with SIGINT's default handling, as in a terminal: idle (after its start-up
measurement), with a DeepFill fill of a 1024² photo with a 400² hole running, and the same
with a request waiting on that fill (``GET /api/jobs/ID?wait=30``, the page's long poll).

Usage: python benchmarks/bench_serve_stop.py [idle] ["fill running"] ["long poll"]
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
from PIL import Image
from skimage import data

CASES = ("idle", "fill running", "long poll")


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def stop_time(case: str) -> tuple[float, int, str]:
    """``(seconds from SIGINT to exit, exit code, stderr)`` for one case."""
    child = subprocess.Popen(
        [sys.executable, "-m", "inpaintkit.cli", "serve", "--port", "0", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        url = re.search(r"(http://\S+)", child.stdout.readline())[1]
        if case == "idle":
            time.sleep(25)  # past the start-up measurement
        else:
            with httpx.Client(base_url=url, timeout=60) as web:
                pixels = np.asarray(Image.fromarray(data.astronaut()).resize((1024, 1024)))
                image = web.post("/api/images?name=a.png", content=png(pixels)).json()["id"]
                hole = np.zeros((1024, 1024), np.uint8)
                hole[300:700, 300:700] = 255
                job = web.post(f"/api/fill?image={image}&method=deepfill", content=png(hole))
                job_id = job.json()["id"]
                while web.get(f"/api/jobs/{job_id}").json()["state"] != "running":
                    time.sleep(0.05)
            if case == "long poll":
                poll = f"{url}api/jobs/{job_id}?wait=30"
                threading.Thread(target=httpx.get, args=(poll,), kwargs={"timeout": 60}).start()
                time.sleep(0.5)
        start = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
        return time.monotonic() - start, child.returncode, err
    finally:
        child.kill()


def main() -> None:
    print(f"load average: {os.getloadavg()}")
    for case in sys.argv[1:] or CASES:
        seconds, code, err = stop_time(case)
        print(f"{case}: exit {code} after {seconds:.2f} s; stderr {err!r}", flush=True)


if __name__ == "__main__":
    main()
