"""serve's RSS over many fills, each on a new large upload: does it flatten under the budget?

The real ``inpaintkit serve --device cpu`` runs in a child process; this process, N times,
uploads a new W x H JPEG (a gradient with noise, so every upload differs), fills a 200 x 200
hole with PatchMatch at ``max_size`` 512 and waits for it, then reads the child's ``VmRSS``;
at the end its ``VmHWM`` (peak). Extra arguments go to ``inpaintkit serve``. Linux only (/proc).

    python benchmarks/serve_memory.py --memory-budget 2G      # docs/serve.md, "Memory"
    python benchmarks/serve_memory.py --fills 20 --size 2000x1500
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import time

import httpx
import numpy as np
from PIL import Image


def _status(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` field in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return int(re.search(rf"{field}:\s+(\d+)", status.read()).group(1)) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=int, default=60)
    parser.add_argument("--size", default="4000x3000", help="WxH of each upload")
    args, serve_args = parser.parse_known_args()
    width, height = (int(v) for v in args.size.split("x"))
    cmd = [sys.executable, "-m", "inpaintkit", "serve", "--port", "0", "--quiet"]
    child = subprocess.Popen(
        [*cmd, "--device", "cpu", *serve_args], stdout=subprocess.PIPE, text=True
    )
    try:
        url = re.search(r"(http://\S+)", child.stdout.readline()).group(1)
        rng = np.random.default_rng(0)
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        mask = np.zeros((height, width), np.uint8)
        mask[height // 2 - 100 : height // 2 + 100, width // 2 - 100 : width // 2 + 100] = 255
        buffer = io.BytesIO()
        Image.fromarray(mask).save(buffer, format="PNG")
        mask_png = buffer.getvalue()
        client = httpx.Client(base_url=url, timeout=300)
        print(f"fills 0: {_status(child.pid, 'VmRSS')} MB", flush=True)
        start = time.perf_counter()
        for n in range(1, args.fills + 1):
            noise = rng.normal(0, 20, (height, width, 1)).astype(np.float32)
            picture = np.clip(ramp + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)
            buffer = io.BytesIO()
            Image.fromarray(picture).save(buffer, format="JPEG", quality=90)
            upload = client.post(f"/api/images?name=p{n}.jpg", content=buffer.getvalue())
            upload.raise_for_status()
            query = f"image={upload.json()['id']}&method=patchmatch&max_size=512"
            job = client.post(f"/api/fill?{query}", content=mask_png).json()
            while job["state"] in ("queued", "running"):
                job = client.get(f"/api/jobs/{job['id']}?wait=5").json()
            assert job["state"] == "done", job
            print(f"fills {n}: {_status(child.pid, 'VmRSS')} MB", flush=True)
        seconds = time.perf_counter() - start
        print(f"peak (VmHWM) {_status(child.pid, 'VmHWM')} MB; {seconds:.0f} s", flush=True)
    finally:
        child.terminate()
        child.wait()


if __name__ == "__main__":
    main()
