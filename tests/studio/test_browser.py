"""The studio in a real browser: Debian's chromium, driven by Playwright (the system browser;
Playwright's own browser download is never used).

Open the page, upload examples/loop.wav, choose violin on the debug model, dream, and find the
three players (with the sound decoded by the browser), the spectrogram figure, the report and
the downloads, then dream again from the gallery; upload a file that is not a sound and see the
library's one-line error on the page; record from chromium's fake microphone and dream. Every
request the page makes to another host is recorded and refused, and the server runs under the
network watch: neither may see one. A screenshot of the dream is kept
(``studio.png`` in the test's folder; also in ``$DREAMSOUND_ARTEFACTS`` when that is set).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.studio.conftest import LOOP, StudioServer

CHROMIUM = Path(os.environ.get("DREAMSOUND_CHROMIUM", "/usr/bin/chromium"))
#: Headless, and nothing of chromium's own that reaches the internet (updates, sync, QUIC);
#: chromium's fake microphone (a beep) stands in for a real one.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no chromium at {CHROMIUM} (Debian: "
                       "apt-get install chromium chromium-driver; CI installs it)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                               "(it is in the test extra: pip install '.[test]')")


@pytest.fixture
def page(studio_server: StudioServer):
    """A chromium page on the studio; ``page.external`` lists requests to other hosts."""
    external: list[str] = []

    def only_local(route) -> None:
        url = route.request.url
        if url.startswith((studio_server.url, "data:", "blob:")):
            route.continue_()
        else:
            external.append(url)
            route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                      permissions=["microphone"])
        context.route("**/*", only_local)
        tab = context.new_page()
        tab.set_default_timeout(60_000)
        tab.external = external
        tab.goto(studio_server.url)
        tab.wait_for_selector("#run")
        yield tab
        browser.close()


def _upload(page, path: Path) -> None:
    page.set_input_files("#sound input[type=file]", str(path))


def _choose_target(page, name: str) -> None:
    target = page.locator("#target input")
    target.click()
    target.fill(name)
    page.keyboard.press("Enter")


def test_dream_in_the_browser(page, studio_server: StudioServer, tmp_path: Path):
    _upload(page, LOOP)
    page.wait_for_selector("#sound :text('0:08')")  # the browser decoded the upload
    _choose_target(page, "violin")
    page.locator("#knob-steps input").fill("3")
    page.click("#advanced")  # the advanced knobs, made from DreamConfig
    page.locator("#knob-fit_iterations input").fill("0")
    page.click("#run")
    page.wait_for_selector("#result-report table")

    # Three players, each with its sound loaded (duration shown) and a WAV behind its link.
    for name, file in (("original", "001-loop.dream-violin.original.wav"),
                       ("dream", "001-loop.dream-violin.wav"),
                       ("gradient", "001-loop.dream-violin.gradient.wav")):
        player = page.locator(f"#result-{name}")
        player.locator(":text('0:08')").wait_for()
        link = player.locator("a.download-link")
        assert link.get_attribute("download") == file
        body = page.request.get(link.get_attribute("href")).body()
        assert body[:4] == b"RIFF" and body[8:12] == b"WAVE"
    figure = page.locator("#result-figure img")
    figure.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 600",
                           arg=figure.element_handle())
    report = page.locator("#result-report").inner_text()
    for words in ("#1 loop → violin (debug)", "before", "after (dreamed)", "rendered (file)",
                  "confidence of violin", "rmse_db"):
        assert words in report
    downloads = page.locator("#result-files").inner_text()
    assert "001-loop.dream-violin" in downloads and ".json" in downloads
    assert "done" in page.locator("#status").inner_text()

    shot = tmp_path / "studio.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    if os.environ.get("DREAMSOUND_ARTEFACTS"):
        folder = Path(os.environ["DREAMSOUND_ARTEFACTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, folder / "studio.png")

    # The gallery tab holds the dream (shown as A); dreaming again from it goes back to the
    # Dream tab with the dream as the new sound.
    page.get_by_role("tab", name="Gallery").click()
    assert "loop" in page.locator("#gallery-table").inner_text()
    page.locator("#A-report :text('#1 loop → violin (debug)')").wait_for()
    page.click("#again-A")
    page.locator("#run").wait_for(state="visible")
    page.click("#run")
    page.locator("#status :text('#2 loop.dream-violin → violin (debug)')").wait_for()

    assert page.external == []
    assert studio_server.network_attempts() == []


def test_non_audio_upload_shows_the_error_line(page, studio_server: StudioServer,
                                               tmp_path: Path):
    fake = tmp_path / "notes.wav"
    fake.write_text("these are words, not samples\n")
    _upload(page, fake)
    _choose_target(page, "violin")
    page.click("#run")
    toast = page.locator(".toast-body", has_text="holds text, not sound")
    toast.wait_for()
    assert "Traceback" not in toast.inner_text()
    page.locator("#status :text('error:')").wait_for()
    assert "notes.wav: holds text, not sound" in page.locator("#status").inner_text()
    assert page.external == []
    assert studio_server.network_attempts() == []


def test_record_from_the_microphone_and_dream(page, studio_server: StudioServer):
    page.locator("#sound button[aria-label='Record audio']").click()
    page.locator("#sound button", has_text="Record").first.click()
    page.wait_for_timeout(2000)
    page.locator("#sound button", has_text="Stop").first.click()
    page.wait_for_selector("#sound :text('0:02')")  # two seconds of chromium's fake microphone
    _choose_target(page, "violin")
    page.locator("#knob-steps input").fill("2")
    page.click("#run")
    page.wait_for_selector("#result-report table")
    assert "→ violin (debug)" in page.locator("#status").inner_text()
    page.locator("#result-dream :text('0:02')").wait_for()
    assert page.external == []


def test_cancel_a_long_dream(page, studio_server: StudioServer):
    _upload(page, LOOP)
    page.wait_for_selector("#sound :text('0:08')")
    _choose_target(page, "violin")
    page.locator("#knob-steps input").fill("100000")
    page.click("#run")
    page.wait_for_selector("#status progress")  # live progress: a bar, step, confidence
    assert "confidence" in page.locator("#status").inner_text()
    page.click("#cancel")
    page.locator("#status :text('cancelled after step')").wait_for()
    # The model is free again at once: a short dream goes through.
    page.locator("#knob-steps input").fill("2")
    page.click("#run")
    page.locator("#status :text('done: #')").wait_for(timeout=30_000)
