"""``ribbed dashboard`` in a real browser: Debian's chromium, driven by Playwright.

The test starts the real command (``ribbed dashboard digits``) on a free port, loads the page,
clicks Step five times and checks that the plots' screenshots changed, plays and pauses, moves
the learning-rate slider with the keyboard, presses Reset and checks that the running model's
learning rate (the page's readout) is the slider's, checks that every request the page made went
to the dashboard's own server (nothing is fetched from elsewhere), then stops the server as a
terminal's Ctrl-C does and checks that it stopped cleanly.

The browser is ``/usr/bin/chromium`` from the Debian packages (``.ci/run`` installs it with
apt-get); Playwright's own browser download (``playwright install``) is never used.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: Flags for a headless chromium that makes no connection of its own (updates, sync, QUIC).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: The longest the server may take to answer (it imports torch, solara and Mesa first), seconds.
START_TIMEOUT = 90.0
#: The longest any one thing the page shows may take to appear, milliseconds.
WAIT_MS = 30_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(server: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stdout.read() if server.stdout else ""
            pytest.fail(f"ribbed dashboard exited with status {server.returncode} before serving:\n{output}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"ribbed dashboard did not listen on port {port} within {START_TIMEOUT:.0f} s")


@pytest.fixture
def dashboard():
    """The real ``ribbed dashboard digits`` in a session of its own (its own process group, as a
    shell's foreground job, with Python's own Ctrl-C handling even if pytest ignores SIGINT)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y --no-install-recommends "
                    "chromium), as .ci/run does; this test drives that browser and never downloads one")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ribbed.cli", "dashboard", "digits", "--port", str(port), "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        wait_for_server(server, port)
        yield server, f"http://127.0.0.1:{port}"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


#: What Playwright says when the <img> it photographs was swapped for a new one mid-shot.
SWAPPED = ("not attached", "not visible")


def screenshot(image) -> bytes:
    """The picture of a plot's image. The page swaps a plot's <img> when the model's values
    arrive: the element being photographed can be detached, or be the new one before its picture
    has loaded (no size yet, "not visible"). Then the locator waits for the new one to show."""
    from playwright.sync_api import Error

    for _ in range(50):
        try:
            image.wait_for(state="visible")
            return image.screenshot()
        except Error as exc:
            if not any(reason in str(exc) for reason in SWAPPED):
                raise
            time.sleep(0.2)
    return image.screenshot()


def test_dashboard_in_chromium(dashboard, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    server, url = dashboard
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            page.on("request", lambda request: requests.append(request.url))
            page.goto(url)

            # The page loads: controls, sliders, the readout and the plots of tick 0.
            step = page.get_by_role("button", name="Step")
            step.wait_for()
            page.get_by_text("tick: 0 of 2000").wait_for()
            plots = {title: page.locator(".v-card", has_text=title).locator("img").first
                     for title in ("Loss", "Accuracy", "Selectivity")}
            before = {title: screenshot(plot) for title, plot in plots.items()}
            page.get_by_text("no guided population in 'digits'").first.wait_for()

            # Five steps change the plots.
            for _ in range(5):
                step.click()
            page.get_by_text("Step: 5").wait_for()
            page.get_by_text("tick: 5 of 2000").wait_for()
            page.get_by_text("evaluated at tick: 5").wait_for()
            after = {title: screenshot(plot) for title, plot in plots.items()}
            for title in plots:
                assert after[title] != before[title], f"the {title} plot looks the same after 5 steps"
            page.screenshot(path=str(tmp_path / "dashboard.png"))

            # Play steps on by itself until paused.
            page.get_by_role("button", name="▶").click()
            page.get_by_text(re.compile(r"^Step: ([89]|\d{2,})$")).wait_for()
            page.get_by_role("button", name="❚❚").click()
            page.get_by_role("button", name="▶").wait_for()

            # Moving a slider changes the model's parameter (at Reset, as in every SolaraViz page).
            page.get_by_text("learning rate: 0.1", exact=True).wait_for()
            thumb = page.locator(".v-input", has_text="learning rate (learning.lr)").locator("[role=slider]")
            thumb.focus()
            for _ in range(5):
                thumb.press("ArrowRight")  # step 0.001
            assert thumb.get_attribute("aria-valuenow") == "0.105"
            thumb.press("Tab")  # leave the slider; its value reaches the server
            reset, readout = page.get_by_role("button", name="Reset"), page.get_by_text("learning rate: 0.105")
            for _ in range(10):  # until the slider's value has reached the server (it comes asynchronously)
                reset.click()
                try:
                    readout.wait_for(timeout=2_000)
                    break
                except Exception:  # playwright's TimeoutError: not there yet
                    continue
            readout.wait_for()
            page.get_by_text("tick: 0 of 2000").wait_for()
        finally:
            browser.close()

    # Everything the page loaded came from the dashboard's own server.
    # (blob: URLs are the page's own images, made in the browser from what the server sent)
    elsewhere = [request for request in requests
                 if not request.removeprefix("blob:").startswith(url + "/") and not request.startswith("data:")]
    assert requests and not elsewhere, elsewhere

    # Ctrl-C (SIGINT to the foreground process group) stops the server cleanly.
    os.killpg(server.pid, signal.SIGINT)
    output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    assert f"ribbed dashboard: 'digits' at {url}" in output
    assert "ribbed dashboard: stopped" in output
    assert "Traceback" not in output, output


def test_sigterm_stops_the_server_and_solaras_child(dashboard) -> None:
    """``kill`` of the ``ribbed dashboard`` process alone (not its group) stops solara's server too."""
    server, url = dashboard
    port = int(url.rsplit(":", 1)[1])
    server.send_signal(signal.SIGTERM)
    output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    assert "ribbed dashboard: stopped" in output
    with pytest.raises(OSError):  # nothing listens any more: the child is gone
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
