"""The page `cyclediff serve` itself builds (its default demo models, loaded before the page is made, as a newcomer
starts it), in Debian's chromium: examples to start from, a bad upload told in one line without a server path,
a mask painted with the brush that limits the edit, and whole result thumbnails."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make install does)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_PATH = re.compile(r"(^|[\s'\"(])/(tmp|work|home|root|var|usr)/")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``cyclediff serve --port P`` in its own process, as the README starts it."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cyclediff", "serve", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"cyclediff serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 1000})
        yield tab
        browser.close()


@pytest.fixture(scope="module")
def digit(tmp_path_factory) -> Path:
    from cyclediff._images import save_image
    from cyclediff.demo.data import split

    _, _, x, y = split()
    path = tmp_path_factory.mktemp("digit") / "three.png"
    save_image((x[(y == 3).nonzero()[0, 0]] + 1) / 2, path)
    return path


def _fill_edit(page, image: Path) -> None:
    page.locator("#edit-image input[type=file]").set_input_files(str(image))
    page.locator("#edit-source textarea, #edit-source input").first.fill("3")
    page.locator("#edit-target textarea, #edit-target input").first.fill("8")


def _pixels(page, selector: str) -> np.ndarray:
    src = page.locator(selector).first.get_attribute("src")
    with Image.open(io.BytesIO(page.request.get(src).body())) as img:
        return np.asarray(img.convert("L"), dtype=np.int16)


def test_the_served_page_has_its_example_digits(server, page):
    page.goto(server, wait_until="domcontentloaded")
    page.wait_for_selector("#edit-run", timeout=60_000)
    for name in ("digit-3.png", "digit-5.png"):
        assert page.locator(f"img[src*='{name}']").count() >= 1, f"the example {name} is not on the page"
    # crisp (nearest neighbour, a whole multiple of 8 × 8) and above the fold (they were blurred, at the bottom)
    look = page.evaluate("""() => [...document.querySelectorAll('#edit-examples img')].map(i => ({
        rendering: getComputedStyle(i).imageRendering, width: i.getBoundingClientRect().width,
        bottom: i.getBoundingClientRect().bottom}))""")
    assert look and all(x["rendering"] == "pixelated" and x["width"] % 8 == 0 for x in look), look
    assert all(x["bottom"] < 1000 for x in look), look


def test_stop_says_stopped_and_a_new_upload_clears_the_latent_file(server, page, digit):
    """After Stop the status said "0 of 8 done" as if it were running; a new upload left the last image's latent."""
    page.goto(server, wait_until="domcontentloaded")
    _fill_edit(page, digit)
    page.locator("#edit-encode").click()
    page.wait_for_selector("#edit-latent a, #edit-latent .file-preview", timeout=60_000)
    page.locator("#edit-image input[type=file]").set_input_files(str(digit))
    page.wait_for_function("!document.querySelector('#edit-latent a, #edit-latent .file-preview')", timeout=30_000)
    page.locator("#edit-settings").get_by_text("Settings").click()
    for elem, value in (("#edit-steps", "1000"), ("#edit-count", "8")):
        box = page.locator(f"{elem} input[type=number]")
        box.fill(value)
        box.press("Enter")
    page.locator("#edit-run").click()
    page.wait_for_function("document.querySelector('#edit-status')?.innerText.includes('of 8 done')",
                           timeout=60_000)
    page.locator("#edit-stop").click()
    page.wait_for_function("document.querySelector('#edit-status')?.innerText.includes('stopped')", timeout=30_000)
    assert page.locator("#edit-status").inner_text().split("\n")[0].endswith("of 8 done · stopped")


@pytest.mark.parametrize("name, words", [("notes.txt", "Invalid file type"),  # the browser refuses it itself
                                         ("photo.png", "cannot read image photo.png")])  # it reaches the server
def test_a_text_file_uploaded_as_an_image_is_one_line_without_a_path(server, page, tmp_path, name, words):
    notes = tmp_path / name
    notes.write_text("not an image\n")
    page.goto(server, wait_until="domcontentloaded")
    _fill_edit(page, notes)
    if name.endswith(".png"):  # the browser lets it through: the server reads it when the edit starts
        page.locator("#edit-run").click()
    toast = page.locator(".toast-body").first
    toast.wait_for(timeout=60_000)
    lines = [line.strip() for line in toast.inner_text().splitlines() if line.strip() not in ("", "Error", "×")]
    assert len(lines) == 1 and words in lines[0], lines
    assert not SERVER_PATH.search(lines[0]) and "Could not preprocess" not in lines[0], lines


def test_a_bad_upload_after_an_example_an_edit_or_with_the_mask_open_is_one_line(server, page, tmp_path):
    """After an example was clicked (the intended first step), after an edit has run, and with the mask editor
    open, a text file named .png was three raw "Could not preprocess … /tmp/gradio/…/notimage.png" toasts and an
    "Error" badge on every box: a box updated in a session lost its tolerance of a file that is no image."""
    bad = tmp_path / "notimage.png"
    bad.write_text("not an image\n")

    def example() -> None:
        page.locator("img[src*='digit-3.png']").first.click()
        page.wait_for_selector("#edit-image img[src*='digit-3']", timeout=30_000)

    def edited() -> None:
        example()
        page.locator("#edit-run").click()
        page.wait_for_function("document.querySelector('#edit-status')?.innerText.includes('1 of 1 done')",
                               timeout=120_000)

    def mask_open() -> None:
        example()
        page.locator("#edit-mask-settings").get_by_text("Local edit (mask)").click()
        page.locator("#edit-mask canvas").first.wait_for(timeout=30_000)

    for state in (example, edited, mask_open):
        page.goto(server, wait_until="domcontentloaded")
        page.wait_for_selector("#edit-run", timeout=60_000)
        state()
        page.locator("#edit-image input[type=file]").set_input_files(str(bad))
        time.sleep(1.0)
        page.locator("#edit-run").click()
        page.locator(".toast-body").first.wait_for(timeout=60_000)
        time.sleep(1.5)  # any other toast comes
        toasts = [[line.strip() for line in t.inner_text().splitlines() if line.strip() not in ("", "Error", "×")]
                  for t in page.locator(".toast-body").all()]
        assert len(toasts) == 1 and len(toasts[0]) == 1, (state.__name__, toasts)
        line = toasts[0][0]
        assert "cannot read image notimage.png" in line and not SERVER_PATH.search(line), (state.__name__, line)
        assert "preprocess" not in line, (state.__name__, line)
        badges = [e for e in page.get_by_text("Error", exact=True).all()  # a screen reader's live region is none
                  if e.evaluate("e => !e.closest('.sr-only')")]
        assert len(badges) <= 2, state.__name__  # the toast's and the gallery's


def test_a_mask_painted_with_the_brush_limits_the_edit(server, page, digit):
    """Paint a stroke over the upper left of the digit; the edit (3 → 8) changes pixels only inside the mask the
    page shows as used, and every pixel outside it is the input's, exactly (the library's masks guarantee it)."""
    page.goto(server, wait_until="domcontentloaded")
    _fill_edit(page, digit)
    page.locator("#edit-mask-settings").get_by_text("Local edit (mask)").click()
    canvas = page.locator("#edit-mask canvas").first
    canvas.wait_for(timeout=30_000)
    time.sleep(1.5)  # the uploaded image becomes the editor's background
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 60, cy - 60)
    page.mouse.down()
    for k in range(1, 21):
        page.mouse.move(cx - 60 + 2 * k, cy - 60)
    page.mouse.up()
    page.locator("#edit-settings").get_by_text("Settings").click()
    steps = page.locator("#edit-steps input[type=number]")
    steps.fill("100")
    steps.press("Enter")
    page.locator("#edit-run").click()
    page.wait_for_function("document.querySelector('#edit-status')?.innerText.includes('1 of 1 done')",
                           timeout=120_000)
    page.wait_for_selector("#edit-mask-used img", timeout=30_000)
    shots = os.environ.get("CYCLEDIFF_SCREENSHOTS")
    if shots:
        page.screenshot(path=str(Path(shots) / "web-mask.png"), full_page=True)
    mask, seen = _pixels(page, "#edit-mask-used img") > 0, _pixels(page, "#edit-seen img")
    out = _pixels(page, "#edit-gallery img")
    assert 0 < mask.sum() < mask.size, "the painted stroke should cover some pixels, not all"
    assert np.array_equal(out[~mask], seen[~mask]), "a pixel outside the painted mask changed"
    assert (out[mask] != seen[mask]).any(), "nothing changed inside the mask"
    _thumbnails_are_whole(page)


def _thumbnails_are_whole(page) -> None:
    """The result's thumbnail shows the whole image: inside its frame, under the gallery's label, above its caption
    (they were drawn over it: tops and corners cut off)."""
    geometry = page.evaluate("""() => { const g = document.querySelector('#edit-gallery');
        const r = e => e.getBoundingClientRect();
        return {label: r(g.querySelector('label')), items: [...g.querySelectorAll('.thumbnail-item')].map(t => ({
            frame: r(t), img: r(t.querySelector('img')), caption: r(t.querySelector('.caption-label')),
            fit: getComputedStyle(t.querySelector('img')).objectFit}))}; }""")
    assert geometry["items"]
    for item in geometry["items"]:
        img, frame, caption = item["img"], item["frame"], item["caption"]
        assert item["fit"] == "contain"
        assert img["top"] >= geometry["label"]["bottom"] - 0.5, "the label covers the image's top"
        assert frame["top"] - 0.5 <= img["top"] and img["bottom"] <= frame["bottom"] + 0.5, "the frame cuts the image"
        assert caption["top"] >= img["bottom"] - 0.5, "the caption covers the image"
        assert img["width"] < 400, "one result fills the gallery's width (and is cut below)"
