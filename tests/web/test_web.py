"""The web app: the actions without the web, the served app through gradio_client (results equal the
Python API's for the same seed and settings), its limits, and a real browser (Debian's chromium via Playwright)."""

from __future__ import annotations

import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

from cyclediff import CycleDiffusion, SDEdit, edit, translate  # noqa: E402
from cyclediff._images import as_written, load_image, save_image  # noqa: E402
from cyclediff.errors import CycleDiffError  # noqa: E402
from cyclediff.models import StableDiffusion, load  # noqa: E402
from cyclediff.web import Studio, seeds_of  # noqa: E402
from tiny_sd import (  # noqa: E402
    photos,
    sd_pipeline,
    tiny_clip,  # noqa: E402
)

ONE_LEVEL = 1 / 255 + 1e-6  # the app and the API run the same maths in the same process; the PNGs hold 8-bit levels
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One app with the demo models, a tiny Stable Diffusion and a tiny CLIP (ranking), served on a free port."""
    from cyclediff.web.app import build_app, launch

    tmp = tmp_path_factory.mktemp("web")
    sd = StableDiffusion.from_pipe(sd_pipeline(tmp))
    models = {"demo:digits": "demo:digits", "demo:digit-3": "demo:digit-3", "demo:digit-8": "demo:digit-8",
              "tiny-sd": sd}
    studio = Studio(models, clip=tiny_clip(tmp), workdir=tmp / "work")
    app = build_app(studio)
    url = launch(app, studio, port=None, block=False)
    client = Client(url, verbose=False)
    photo = tmp / "photo.png"
    save_image(photos(1, seed=3)[0], photo)
    yield {"url": url, "client": client, "studio": studio, "sd": sd, "photo": photo,
           "digit": studio.workdir / "examples" / "digit-3.png", "tmp": tmp}
    app.close()


def _png(path, channels: int = 1) -> torch.Tensor:
    return load_image(path, channels=channels)[0]


def _gen(seed: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed)]


# ---------------------------------------------------------------------------------------------------- no web
def test_seeds_are_a_first_seed_with_a_count_or_a_list():
    assert seeds_of("0") == [0] and seeds_of("5", 3) == [5, 6, 7] and seeds_of("1,5,9", 4) == [1, 5, 9]
    assert seeds_of("0-3") == [0, 1, 2, 3] and seeds_of("", 2) == [0, 1]
    for bad, message in (("x", "seeds"), ("0-99", "at most 64")):
        with pytest.raises(CycleDiffError, match=message):
            seeds_of(bad)


def test_bad_choices_are_one_line_errors_naming_what_is_offered(tmp_path):
    studio = Studio(workdir=tmp_path)
    with pytest.raises(CycleDiffError, match="serves demo:digits, demo:digit-3, demo:digit-8, demo:digits-flow"):
        studio.model("/etc/passwd")
    with pytest.raises(CycleDiffError, match="offers classifier"):
        studio.energy("mypkg:anything")
    with pytest.raises(CycleDiffError, match="class label"):
        studio.condition(studio.model("demo:digits"), "a dog")
    with pytest.raises(CycleDiffError, match="upload an image"):
        studio.edit(None, "demo:digits", "3", "8", strength=0.8, steps=5, eta=0.1, guidance_scale=1)
    save_image(torch.rand(1, 8, 8), tmp_path / "x.png")
    with pytest.raises(CycleDiffError, match="steps must lie in"):
        studio.edit(str(tmp_path / "x.png"), "demo:digits", "3", "8", strength=0.8, steps=0, eta=0.1, guidance_scale=1)


def test_an_oversized_upload_is_refused_in_one_line_before_any_work(tmp_path):
    """The studio reads the upload as the model will see it before it starts: over the server's --max-pixels, the
    request is one error (all its seeds share the one image), naming the limit."""
    studio = Studio(workdir=tmp_path / "w", max_pixels=40)  # the 8 × 8 digit has 64 pixels
    big = tmp_path / "digit.png"
    save_image(torch.rand(1, 8, 8), big)
    with pytest.raises(CycleDiffError, match="max-pixels"):
        studio.translate(str(big), "demo:digit-3", "demo:digit-8", strength=0.5, steps=4, eta=0.1, seeds="0", count=2)


def test_stopping_a_guide_stops_its_chains(tmp_path, monkeypatch):
    (tmp_path / "counting_energy.py").write_text(
        "import time\nCALLS = []\n\ndef slow(x):\n    CALLS.append(1)\n    time.sleep(0.05)\n"
        "    return x.mean(dim=(1, 2, 3))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    studio = Studio(workdir=tmp_path / "w", energies=["counting_energy:slow"])
    events = studio.guide("demo:digits", "counting_energy:slow", weight=1.0, langevin_steps=200, step_size=0.01,
                          steps=3, seeds="0")
    kind = next(kind for kind, _ in events if kind != "progress")  # the sampler's steps come first
    assert kind == "step"
    events.close()  # what a cancelled request does
    import counting_energy

    time.sleep(0.5)
    calls = len(counting_energy.CALLS)
    time.sleep(0.5)
    assert len(counting_energy.CALLS) == calls < 50, "the chain went on after it was stopped"
    assert not [t for t in threading.enumerate() if t.name == "cyclediff-web-work" and t.is_alive()]


# ---------------------------------------------------------------------------------------------------- the API
def test_api_edit_equals_the_python_api_and_ranks_by_directional_clip(served):
    c, sd, photo = served["client"], served["sd"], served["photo"]
    settings = dict(strength=0.8, steps=6, eta=0.1, guidance_scale=3.0, source_guidance_scale=1.0)
    gallery, status, *_ = c.predict(handle_file(str(photo)), "tiny-sd", "a cat", "a dog", *settings.values(), "",
                                    "0", 3, "cyclediffusion", api_name="/edit")
    assert status.startswith("3 of 3 done") and "ranked by directional CLIP" in status
    scores = [float(item["caption"].split("directional CLIP ")[1].split(" ")[0]) for item in gallery]
    assert scores == sorted(scores, reverse=True)
    x = load_image(photo, channels=3)
    for item in gallery:
        seed = int(item["caption"].split(" ")[1])
        head = {k: v for k, v in settings.items() if k != "eta"}  # η is the method's option in the Python API
        ours = edit(sd, x, source_prompt="a cat", prompt="a dog", generator=_gen(seed), **head,
                    method=CycleDiffusion(eta=settings["eta"])).images
        torch.testing.assert_close(_png(item["image"], 3), as_written(ours)[0], rtol=0, atol=ONE_LEVEL)


def test_api_translate_and_class_edit_equal_the_python_api(served):
    c, digit = served["client"], served["digit"]
    x = load_image(digit, channels=1)
    outputs, status, seen = c.predict(handle_file(str(digit)), "demo:digit-3", "demo:digit-8", "", "", "sdedit", 0.7,
                                      20, 0.5, 2, 1, "4", 1, api_name="/translate")
    assert status == "1 of 1 done\n\nthe model's input: 8 × 8 grey, as uploaded"
    torch.testing.assert_close(_png(seen), x[0], rtol=0, atol=0)  # the digit is the model's size already
    ours = translate(x, load("demo:digit-3"), load("demo:digit-8"), strength=0.7, steps=20, refine_steps=2,
                     generator=_gen(4), method=SDEdit(eta=0.5)).images
    torch.testing.assert_close(_png(outputs[0]["image"]), as_written(ours)[0], rtol=0, atol=ONE_LEVEL)
    gallery, *_ = c.predict(handle_file(str(digit)), "demo:digits", "3", "8", 0.8, 30, 0.1, 3.0, 1.0, "", "1", 1,
                            "cyclediffusion", api_name="/edit")
    model = load("demo:digits")
    ours = translate(x, model, model, strength=0.8, steps=30, generator=_gen(1),
                     source_condition={"class_labels": [3]},
                     target_condition={"class_labels": [8], "guidance_scale": 3.0}).images  # as asked
    torch.testing.assert_close(_png(gallery[0]["image"]), as_written(ours)[0], rtol=0, atol=ONE_LEVEL)


def test_api_encode_then_decode_gives_the_image_back_or_another_class(served):
    c, digit = served["client"], served["digit"]
    latent = c.predict(handle_file(str(digit)), "demo:digits", "3", 1.0, 20, 0.1, 1.0, "0", api_name="/encode")
    assert latent.endswith(".latent.safetensors")
    back, clip, made = c.predict(handle_file(latent), "demo:digits", "", 1.0, "", api_name="/decode")
    assert clip is None and Path(made).name == Path(back).name  # an image's latent: an image, no clip
    torch.testing.assert_close(_png(back), _png(digit), rtol=0, atol=ONE_LEVEL)  # the code is exact
    other, _, _ = c.predict(handle_file(latent), "demo:digits", "8", 3.0, "", api_name="/decode")
    assert (_png(other) - _png(back)).abs().max() > 0.1


def test_api_guide_lowers_the_classifier_energy_and_plots_every_step(served):
    gallery, plot, status = served["client"].predict("demo:digits", "classifier", "", 8, "", 10.0, 12, 0.05, 5, "0",
                                                     2, api_name="/guide")
    assert status.startswith("2 of 2 done") and len(gallery) == 2
    rows = plot["data"]
    assert len(rows) == 13 * 2 and {r[2] for r in rows} == {"0", "1"}  # chains by seed (the legend's title)
    for chain in ("0", "1"):
        energies = [r[1] for r in rows if r[2] == chain]
        assert energies[-1] < energies[0]


def test_api_errors_are_one_line_and_the_server_names_no_other_file(served):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="/etc/passwd is not in the list of choices"):  # gradio checks choices
        served["client"].predict(handle_file(str(served["digit"])), "/etc/passwd", "3", "8", 0.8, 5, 0.1, 1.0, 1.0,
                                 "", "0", 1, "cyclediffusion", api_name="/edit")
    for path in ("/etc/passwd", str(Path(__file__))):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{served['url']}gradio_api/file={path}", timeout=10)
        assert err.value.code in (403, 404)
    assert served["url"].startswith("http://127.0.0.1:")


def test_serve_refuses_a_bad_energy_before_serving():
    from click.testing import CliRunner

    from cyclediff.cli import main

    res = CliRunner().invoke(main, ["serve", "--energy", "no_such_module:f", "--port", "0"])
    assert res.exit_code != 0 and "cannot load energy" in res.output and "Traceback" not in res.output


def test_serve_on_a_busy_port_says_so_in_one_line_before_loading_models():
    """It was a 35-line traceback after the models loaded, advising launch() and share=True."""
    import socket

    from click.testing import CliRunner

    from cyclediff.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = CliRunner().invoke(main, ["serve", "--port", str(port)])
    assert res.exit_code != 0 and f"port {port} on 127.0.0.1 is in use" in res.output and "--port" in res.output
    assert "Traceback" not in res.output and "share" not in res.output and "loading" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


def test_serve_stopped_by_sigterm_removes_its_work_folder(tmp_path):
    """A service manager stops a server with SIGTERM: its work folder (uploads, results) stayed behind."""
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "cyclediff", "serve", "--model", "demo:digits", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TMPDIR": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "the server did not start"
                time.sleep(0.5)
        assert list(tmp_path.glob("cyclediff-serve-*")), "no work folder while serving"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert not list(tmp_path.glob("cyclediff-serve-*")), "the work folder survived SIGTERM"


# ---------------------------------------------------------------------------------------------------- a browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make install installs it)")
def test_a_browser_edits_a_digit_and_sees_the_api_result(served, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("CYCLEDIFF_SCREENSHOTS", tmp_path))
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(served["url"], wait_until="domcontentloaded")
        page.locator("#edit-image input[type=file]").set_input_files(str(served["digit"]))
        page.locator("#edit-source textarea, #edit-source input").first.fill("3")
        page.locator("#edit-target textarea, #edit-target input").first.fill("8")
        page.locator("#edit-settings").get_by_text("Settings").click()
        for elem, value in (("#edit-steps", "100"), ("#edit-count", "4")):
            box = page.locator(f"{elem} input[type=number]")
            box.fill(value)
            box.press("Enter")
        page.locator("#edit-run").click()
        page.wait_for_function("document.querySelector('#edit-status')?.innerText.includes('4 of 4 done')",
                               timeout=120_000)
        src = page.locator("#edit-gallery img").first.get_attribute("src")
        shown = page.request.get(src if src.startswith("http") else served["url"].rstrip("/") + src).body()
        page.screenshot(path=str(shots / "web-edit.png"), full_page=True)
        page.get_by_role("tab", name="Guide").click()
        page.locator("#guide-settings").get_by_text("Settings").click()
        box = page.locator("#guide-langevin input[type=number]")
        box.fill("12")
        box.press("Enter")
        page.locator("#guide-run").click()
        try:
            page.wait_for_function("document.querySelector('#guide-status')?.innerText.includes('1 of 1 done')",
                                   timeout=120_000)
        finally:
            page.screenshot(path=str(shots / "web-guide.png"), full_page=True)
        page.screenshot(path=str(shots / "web-guide.png"), full_page=True)
        browser.close()
    (tmp_path / "shown.png").write_bytes(shown)
    model = load("demo:digits")
    x = load_image(served["digit"], channels=1)
    ours = translate(x, model, model, strength=0.8, steps=100, generator=_gen(0),
                     source_condition={"class_labels": [3]},
                     target_condition={"class_labels": [8], "guidance_scale": 1.0}).images  # the model's default
    torch.testing.assert_close(_png(tmp_path / "shown.png"), as_written(ours)[0], rtol=0, atol=ONE_LEVEL)
    assert (shots / "web-edit.png").stat().st_size > 10_000


def test_the_page_cyclediff_serve_builds_has_its_examples(tmp_path):
    """`cyclediff serve` loads its models before it builds the page: the examples must still be found (they were
    looked for among model names only, which loading replaces by models)."""
    from cyclediff.web.app import _examples, build_app

    studio = Studio(["demo:digits", "demo:digit-3", "demo:digit-8"], workdir=tmp_path)
    for name in studio.names:  # as `cyclediff serve` does before building the page
        studio.model(name)
    assert len(_examples(studio)) == 2
    config = build_app(studio).get_config_file()
    assert sum(c.get("type") == "dataset" for c in config["components"]) >= 2  # Edit's and Translate's examples


def test_cancelling_through_gradio_stops_an_edit_within_one_result(served):
    """A cancel by gradio_client (the page's Stop does the same) closes the request's generator; the served studio
    ticks, so the close lands within a tick and the work stops after the result being computed: of 8 seeds, at
    most the first and the one under way are written."""
    studio, c = served["studio"], served["client"]

    def outputs() -> set:
        return set(studio.workdir.rglob("*_seed*.png"))  # results (not the model's input, nor the examples)

    before = outputs()
    start = time.time()
    job = c.submit(handle_file(str(served["digit"])), "demo:digit-3", "demo:digit-8", "", "", "cyclediffusion", 1.0,
                   150, 0.5, 0, 1, "0-7", 1, api_name="/translate")
    while not outputs() - before and time.time() < start + 120:
        time.sleep(0.05)
    one = time.time() - start  # a result's time, at least (a slower machine waits longer below)
    assert outputs() - before, "no result came"
    job.cancel()
    time.sleep(max(3.0, 2.5 * one))  # the result under way finishes
    written = outputs() - before
    time.sleep(one + 1.0)
    assert len(written) <= 2 and outputs() - before == written  # stopped, and nothing more comes


def test_api_a_file_that_is_no_image_is_one_line_naming_no_server_path(served):
    """Gradio's own preprocessing said "Could not preprocess input component at index 0 … cannot identify image
    file '/tmp/gradio/…/photo.png'"; the studio reads the upload itself and says what is wrong with it."""
    from gradio_client.exceptions import AppError

    fake = served["tmp"] / "photo.png"
    fake.write_text("not an image")
    with pytest.raises(AppError) as err:
        served["client"].predict(handle_file(str(fake)), "demo:digits", "3", "8", 0.8, 5, 0.1, 1.0, 1.0, "", "0", 1,
                                 "cyclediffusion", api_name="/edit")
    message = str(err.value)
    assert "cannot read image photo.png" in message and "/tmp" not in message and "preprocess" not in message
    assert "\n" not in message.strip()


def test_stopped_requests_never_compute_at_once_and_end_within_a_step(served, monkeypatch):
    """Submit and stop five translations in a row (a result takes seconds: the UNet is slowed down): the device
    runs one computation at a time (gradio frees a stopped request's queue slot at once; its computation kept going
    to the end of its result: five ran side by side), and each stopped one ends within a step or two."""
    studio, c = served["studio"], served["client"]
    calls: list[tuple[threading.Thread, float, float]] = []  # (thread, start, end) of every UNet call
    for name in ("demo:digit-3", "demo:digit-8"):
        unet = studio.model(name).unet
        forward = unet.forward

        def slow(*args, _forward=forward, **kwargs):
            start = time.monotonic()
            time.sleep(0.02)
            out = _forward(*args, **kwargs)
            calls.append((threading.current_thread(), start, time.monotonic()))  # (an ident is reused)
            return out

        monkeypatch.setattr(unet, "forward", slow)
    stopped: list[tuple[threading.Thread, float]] = []  # (thread, when its stop was sent)
    for _ in range(5):
        known = {t for t, _, _ in calls}
        job = c.submit(handle_file(str(served["digit"])), "demo:digit-3", "demo:digit-8", "", "", "cyclediffusion",
                       1.0, 1000, 0.5, 0, 1, "0-7", 1, api_name="/translate")
        deadline = time.monotonic() + 60
        while not {t for t, _, _ in calls} - known and time.monotonic() < deadline:
            time.sleep(0.01)
        new = {t for t, _, _ in calls} - known
        assert new, "the request did not start"
        job.cancel()
        stopped.append((new.pop(), time.monotonic()))
    time.sleep(3.0)
    spans = {t: (min(s for u, s, _ in calls if u == t), max(e for u, _, e in calls if u == t)) for t, _ in stopped}
    ordered = sorted(spans.values())
    for (_, end), (start, _) in zip(ordered, ordered[1:]):
        assert end <= start, "two computations ran at once"
    for thread, when in stopped:
        assert spans[thread][1] - when < 1.5, "a stopped computation went on for more than a step or two"


def test_api_a_mask_layer_that_is_no_image_or_too_big_is_one_line(served):
    """The ImageEditor input of /edit: a layer that is no image was gradio's raw "Could not preprocess … EditorData
    … /tmp/gradio/…"; a 13000 × 13000 layer (its header only: 100 bytes) was decoded whatever --max-pixels said."""
    import struct
    import zlib

    from gradio_client.exceptions import AppError

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    text, bomb = served["tmp"] / "layer.png", served["tmp"] / "bomb.png"
    text.write_text("not an image")
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 13000, 13000, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    for layer, words in ((text, "the painted mask layer.png is not an image"), (bomb, "13000 × 13000 pixels")):
        editor = {"background": handle_file(str(served["digit"])), "layers": [handle_file(str(layer))],
                  "composite": None}
        with pytest.raises(AppError) as err:
            served["client"].predict(handle_file(str(served["digit"])), "demo:digits", "3", "8", 0.8, 5, 0.1, 1.0,
                                     1.0, "", "0", 1, "cyclediffusion", editor, "painted", 0.5, api_name="/edit")
        message = str(err.value)
        assert words in message and "/tmp" not in message and "preprocess" not in message, message
        assert "\n" not in message.strip()
