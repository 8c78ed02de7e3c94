"""``inpaintkit serve`` under hostile requests: odd numbers, odd names, a full queue, memory.

Every endpoint's parameters get values a fuzzer would send (Unicode digits, negatives, huge,
empty, NaN, repeated); the answer must be a 4xx with a one-line error, never a 500. The fill
queue refuses past its length with a 503; a finished job lets go of its pixels; a fill or an
upload over the server's memory budget is refused from its size before it is decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# test_serve skips the module without the serve extra; its helpers and its tiny model serve here.
import test_serve
from PIL import Image
from test_serve import BASE, GatedMethod, TestClient, png, wait_until

from inpaintkit.methods import MeanColorMethod
from inpaintkit.serve import create_app
from inpaintkit.serve.jobs import DONE, FillQueue, QueueFull
from inpaintkit.serve.params import parse_number
from inpaintkit.serve.store import ImageStore

#: test_serve's ``checkpoint`` fixture (a tiny random generator, saved once per module), by this name.
tiny_checkpoint = test_serve.checkpoint

#: What a fuzzer sends for a number.
ODD_NUMBERS = [
    "¹²³",  # superscripts: str.isdigit() is True, int() fails
    "²²",
    "١٢٣",  # Arabic-Indic digits: int() and float() accept them
    "１２８",  # full-width digits
    "-1",
    "-0",
    "+16",
    "99999999999999999999999999",
    "1e400",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "0x10",
    " 64",
    "64 ",
    "1_000",
    "12.5.1",
    ".",
    "\x00",
    "64\x00",
    "😀",
]


@pytest.fixture(scope="module")
def client(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("folder")
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(folder / "a.png")
    app = create_app(folder, checkpoint=tiny_checkpoint, device="cpu", port=8000)
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


def _image_and_hole(client: TestClient) -> tuple[str, bytes]:
    pixels = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    answer = client.post("/api/images?name=a.png", content=png(pixels))
    assert answer.status_code == 201, answer.text
    hole = np.zeros((16, 24), bool)
    hole[4:9, 6:12] = True
    return answer.json()["id"], png(hole)


def _is_one_line_4xx(answer, where: str) -> None:
    assert 400 <= answer.status_code < 500, f"{where}: {answer.status_code} {answer.text}"
    error = answer.json()["error"]
    assert error and "\n" not in error and "internal error" not in error, where


def test_every_numeric_parameter_gets_a_4xx_for_odd_values_never_a_500(client) -> None:
    image, hole = _image_and_hole(client)
    job = client.post(f"/api/fill?image={image}&method=patchmatch", content=hole).json()
    numbers = {
        ("GET", "/api/colorwheel.png", "size"): {},
        ("POST", "/api/fill", "max_size"): {"image": image, "method": "patchmatch"},
        ("GET", f"/api/jobs/{job['id']}", "wait"): {},
    }
    for (verb, path, name), fixed in numbers.items():
        for value in ODD_NUMBERS:
            params = [*fixed.items(), (name, value)]
            answer = client.request(verb, path, params=params, content=hole)
            _is_one_line_4xx(answer, f"{path}?{name}={value!r}")
            assert name in answer.json()["error"]
        repeated = client.request(verb, path, params=[*fixed.items(), (name, "64"), (name, "64")],
                                  content=hole)  # fmt: skip
        _is_one_line_4xx(repeated, f"{path} with {name} twice")
        assert "given 2 times" in repeated.json()["error"]
    # In range they work, and the decimal wait too.
    assert client.get("/api/colorwheel.png?size=32").status_code == 200
    assert client.get(f"/api/jobs/{job['id']}?wait=0.01").status_code == 200
    # A Content-Length no ASCII parser accepts.
    for value in ("¹²³", "-5", "nan"):
        answer = client.post(
            "/api/images?name=a.png",
            content=b"x",
            headers={"content-length": value.encode("latin-1")},
        )
        _is_one_line_4xx(answer, f"Content-Length {value!r}")


def test_every_text_parameter_with_odd_values_gets_an_answer_never_a_500(client) -> None:
    image, hole = _image_and_hole(client)
    odd = ["", "..", "../../etc/passwd", "/etc/passwd", "\x00", "a\x00<script>", "¹²³", "NaN",
           "%00", "a" * 5000, "😀", "C:\\windows", "\u202egnp.exe"]  # fmt: skip
    routes = [
        ("POST", "/api/images", "name", {}, png(np.zeros((4, 4, 3), np.uint8))),
        ("POST", "/api/fill", "image", {"method": "patchmatch"}, hole),
        ("POST", "/api/fill", "method", {"image": image}, hole),
        ("POST", "/api/folder/open", "path", {}, b""),
        ("GET", "/api/folder/mask", "path", {}, b""),
        ("PUT", "/api/folder/mask", "path", {}, hole),
        ("GET", "/api/folder/thumb", "path", {}, b""),
    ]
    for verb, path, name, fixed, body in routes:
        for value in odd:
            answer = client.request(verb, path, params=[*fixed.items(), (name, value)],
                                    content=body)  # fmt: skip
            assert answer.status_code < 500, f"{path}?{name}={value!r}: {answer.text}"
    for path in ("/api/images/%00/image.png", "/api/images/..%2F..%2Fx/flow.png", "/api/jobs/¹²³"):
        assert 400 <= client.get(path).status_code < 500, path


def test_one_number_parser_takes_ascii_digits_only() -> None:
    assert parse_number("n", "0042", 0, 100) == 42
    assert parse_number("w", "2.5", 0, 30, fraction=True) == 2.5
    for value in ("١٢", "¹²", "1_0", " 1", "nan", "inf", "1e3", "-1", "1.", ""):
        with pytest.raises(Exception, match="must be a"):
            parse_number("n", value, 0, 10_000, fraction=True)
    with pytest.raises(Exception, match="from 8 to 16"):
        parse_number("n", "17", 8, 16)


def test_upload_names_are_cleaned_of_control_characters(client) -> None:
    pixels = np.zeros((4, 4, 3), np.uint8)
    for name, shown in [
        ("a\x00<script>.png", "a<script>.png"),  # shown as text by the page, never as markup
        ("line\nbreak\r.png", "linebreak.png"),
        ("\x1b[31mred.png", "[31mred.png"),  # no terminal escape reaches the log
        ("\u202egnp.exe", "gnp.exe"),  # no right-to-left override
        ("dir/\x07x.png", "x.png"),
        ("\x00\x01", "image.png"),
    ]:
        answer = client.post("/api/images", params={"name": name}, content=png(pixels))
        assert answer.status_code == 201 and answer.json()["name"] == shown, (name, answer.text)


def test_the_queue_refuses_past_its_length_with_a_503(tiny_checkpoint: Path) -> None:
    app = create_app(checkpoint=tiny_checkpoint, device="cpu", port=8000, max_queued=2)
    queue = app.state.serve.queue
    blocking = queue.methods["patchmatch"] = GatedMethod()
    with TestClient(app, base_url=BASE) as client:
        image, hole = _image_and_hole(client)
        answers = []
        for _ in range(4):
            answers.append(client.post(f"/api/fill?image={image}&method=patchmatch", content=hole))
            if len(answers) == 1:  # the first is taken by the worker: it no longer waits
                wait_until(
                    lambda: (
                        client.get(f"/api/jobs/{answers[0].json()['id']}").json()["state"]
                        == "running"
                    )
                )
        assert [a.status_code for a in answers] == [202, 202, 202, 503]
        assert answers[3].headers["retry-after"] == "2"
        assert "the server has 2 fills waiting, its limit; try again" in answers[3].json()["error"]
        blocking.gate.set()
        for answer in answers[:3]:
            wait_until(
                lambda a=answer: client.get(f"/api/jobs/{a.json()['id']}").json()["state"] == DONE
            )
        # Room again once they ran.
        again = client.post(f"/api/fill?image={image}&method=patchmatch", content=hole)
        assert again.status_code == 202, again.text


def test_a_finished_job_lets_go_of_its_pixels_and_the_queue_bounds_its_bytes() -> None:
    store = ImageStore()
    queue = FillQueue({"mean-color": MeanColorMethod()}, store, max_bytes=3000)
    pixels = np.full((40, 50, 3), 100, np.uint8)  # not black: GatedMethod fails black ones
    hole = np.zeros((40, 50), bool)
    hole[5:9, 5:9] = True
    try:
        job = queue.submit("mean-color", pixels, hole, "a.png", max_size=25)
        assert job.nbytes == hole.nbytes + 20 * 25 * 3 + 20 * 25  # the hole, the working copies
        wait_until(lambda: job.state == DONE)
        assert job.pixels is None and job.hole is None and job.work_pixels is None
        assert job.work_hole is None and job.size == (40, 50) and queue._held == 0
        assert store.get(job.result).pixels.shape == (40, 50, 3)  # the result lives in the store
        # Past max_bytes (with one job holding bytes) a second is refused; one alone never is.
        blocking = queue.methods["mean-color"] = GatedMethod()
        first = queue.submit("mean-color", pixels, hole, "a.png", max_size=25)
        wait_until(lambda: first.state == "running")
        with pytest.raises(QueueFull, match="over the queue's"):
            queue.submit("mean-color", pixels, hole, "b.png", max_size=25)
        blocking.gate.set()
        wait_until(lambda: first.state == DONE)
        assert queue._held == 0
    finally:
        queue.close()


def test_fills_and_uploads_over_the_memory_budget_are_refused_from_their_size(
    tiny_checkpoint: Path,
) -> None:
    app = create_app(checkpoint=tiny_checkpoint, device="cpu", port=8000, memory_budget=4 * 1024**2)
    with TestClient(app, base_url=BASE) as client:
        assert client.get("/api/info").json()["memory_budget"] == 4 * 1024**2
        big = client.post(
            "/api/images?name=big.png", content=png(np.zeros((300, 300, 3), np.uint8))
        )
        assert big.status_code == 413
        assert "big.png needs about 1 MB to decode" in big.json()["error"]
        assert "--memory-budget" in big.json()["error"]
        pixels = np.random.default_rng(1).integers(0, 256, (100, 100, 3), dtype=np.uint8)
        image = client.post("/api/images?name=a.png", content=png(pixels)).json()["id"]
        hole = np.zeros((100, 100), bool)
        hole[40:50, 40:50] = True
        refused = client.post(f"/api/fill?image={image}&method=patchmatch", content=png(hole))
        assert refused.status_code == 413
        assert refused.json()["error"] == (
            "100x100 image: filling it with patchmatch needs about 2 MB, over the 1 MB memory "
            "budget; pass max_size 64 (a working size) or raise the budget "
            "(serve --memory-budget SIZE or INPAINTKIT_MEMORY_BUDGET)"
        )
        fits = client.post(
            f"/api/fill?image={image}&method=patchmatch&max_size=64", content=png(hole)
        )
        assert fits.status_code == 202, fits.text
