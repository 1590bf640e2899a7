"""The 3D view and the report render in headless Chromium (Debian ``chromium``, installed by
``make``) from file:// with the network off: WebGL draws the atoms, a legend click hides a
species, images decode, no console errors or warnings, no request leaves the machine.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages ending in NUL on file descriptors 3 and 4), which needs no port and no websocket
client. Missing chromium is a failure, not a skip.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time

import numpy as np
import pytest
from PIL import Image
from test_viz import SEGREGATION, llzo_like, md_run, run_entry

from hayabusa.viz import li_paths_view, write_report

TIMEOUT_S = 180.0  # page loads are slow on a loaded 2-core CI machine
WIDTH, HEIGHT = 1200, 900


class Chromium:
    """Headless Chromium with one page, driven by DevTools protocol messages on a pipe."""

    def __init__(self, profile_dir, log_path):
        exe = shutil.which("chromium")
        assert exe, "chromium not found: `make test` installs it (apt-get install chromium)"
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        # high, close-on-exec copies; the child dup2s them onto fds 3 and 4 (inheritable)
        hi_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10)
        hi_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def onto_3_and_4():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
             "--enable-unsafe-swiftshader", "--remote-debugging-pipe",
             f"--user-data-dir={profile_dir}", "--no-first-run", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND",
             f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
            preexec_fn=onto_3_and_4, close_fds=False, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=self._log)
        os.close(hi_r)
        os.close(hi_w)
        self.log_path = log_path
        self._buf, self._id, self.events = b"", 0, []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            self.page(method)
        self.page("Network.emulateNetworkConditions", {"offline": True, "latency": 0,
                                                       "downloadThroughput": 0,
                                                       "uploadThroughput": 0})
        self.page("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": HEIGHT,
                                                         "deviceScaleFactor": 1,
                                                         "mobile": False})

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium did not answer; log in {self.log_path}")
            if select.select([self._r], [], [], left)[0]:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium exited; log in {self.log_path}")
                self._buf += chunk
        message, self._buf = self._buf.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params=None, session=None) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def page(self, method: str, params=None) -> dict:
        return self.send(method, params, self.session)

    def evaluate(self, expression: str):
        result = self.page("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True, "awaitPromise": True})
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def open(self, path) -> None:
        """Navigate to file://path and wait for the load event and plotly's first draw."""
        self.events.clear()
        self.page("Page.navigate", {"url": path.resolve().as_uri()})
        deadline = time.monotonic() + TIMEOUT_S
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._next(deadline))
        while not self.evaluate("!!document.querySelector('.js-plotly-plot')?._fullLayout"
                                "?.scene?._scene?.glplot"):
            # without WebGL plotly warns and never draws: fail at once, not at the deadline
            assert not self.problems() and time.monotonic() < deadline, \
                f"plotly did not draw the 3D scene: {self.problems()}"
            time.sleep(0.2)
        self.frames()

    def frames(self, n: int = 3) -> None:
        """Wait for ``n`` animation frames (WebGL draws in them)."""
        self.evaluate(f"new Promise(done => {{ let k = {n}; const f = () => --k ? "
                      "requestAnimationFrame(f) : done(true); requestAnimationFrame(f); })")

    def screenshot(self) -> np.ndarray:
        data = self.page("Page.captureScreenshot", {"format": "png"})["data"]
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y,
                                                   "button": "left", "clickCount": 1})

    def problems(self) -> list[str]:
        """Console errors/warnings (plotly warns via console.trace 'WARN:'), uncaught
        exceptions, error log entries, and requests for anything but file: or data: URLs."""
        out = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled":
                args = [a.get("value", a.get("description")) for a in p["args"]]
                if p["type"] in ("error", "warning", "assert") or args[:1] == ["WARN:"]:
                    out.append(f"console.{p['type']}: {args}")
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')} "
                           f"{p['exceptionDetails'].get('exception', {}).get('description')}")
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"log error: {p['entry']['text']}")
            elif method == "Network.requestWillBeSent":
                url = p["request"]["url"]
                if not url.startswith(("file:", "data:")):
                    out.append(f"network request: {url}")
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._r)
            os.close(self._w)
            self._log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chromium")
    chromium = Chromium(tmp / "profile", tmp / "chromium.log")
    yield chromium
    chromium.close()


def red_pixels(img: np.ndarray) -> int:
    """Pixels of Jmol oxygen red (255, 13, 13), as plotly draws unlit markers."""
    r, g, b = (img[..., k].astype(int) for k in range(3))
    return int(((r > 200) & (g < 60) & (b < 60)).sum())


def test_view_renders_offline_and_a_legend_click_hides_oxygen(browser, tmp_path):
    atoms = llzo_like(repeat=3)  # 108 atoms, 40 O
    n_li = int((atoms.numbers == 3).sum())
    rng = np.random.default_rng(3)
    li = atoms.positions[atoms.numbers == 3] + np.cumsum(
        rng.normal(0, 0.15, (60, n_li, 3)), axis=0)
    g = (np.arange(16) + 0.5) / 16
    u, v, w = np.meshgrid(g, g, g, indexing="ij")
    density = np.exp(-((u - 0.5) ** 2 + (v - 0.5) ** 2 + (w - 0.5) ** 2) / 0.01)
    path = li_paths_view(atoms, li, (density, atoms.cell.array), (2, [2.7, 8.1]),
                         path=tmp_path / "view.html", time_ps=np.arange(60) * 0.1)
    browser.open(path)
    before = browser.screenshot()
    assert before.shape == (HEIGHT, WIDTH, 3)
    assert before.std() > 20 and len(np.unique(before.reshape(-1, 3), axis=0)) > 200
    n_traces = browser.evaluate("document.querySelector('.js-plotly-plot')._fullData.length")
    assert n_traces == 4 + 1 + 2 + 1 + 2  # species, cell, paths + legend entry, iso, planes
    assert browser.evaluate("document.querySelector('.gl-container canvas').width") > 500
    # a real click on the "O" legend entry (plotly waits ~300 ms for a double click)
    box = browser.evaluate(
        "(() => { const t = [...document.querySelectorAll('.legend .traces')]"
        ".find(e => e.textContent.trim() === 'O'); const r = t.querySelector('.legendtoggle')"
        ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    browser.click(*box)
    deadline = time.monotonic() + 30
    while browser.evaluate("document.querySelector('.js-plotly-plot').data"
                           ".find(t => t.name === 'O').visible") != "legendonly":
        assert time.monotonic() < deadline, "the legend click did not hide O"
        time.sleep(0.1)
    browser.frames()
    after = browser.screenshot()
    assert red_pixels(before) > red_pixels(after) + 300, (red_pixels(before),
                                                           red_pixels(after))
    assert browser.problems() == []


def test_report_renders_offline_with_all_images(browser, tmp_path):
    md_run(tmp_path / "gb-600K", llzo_like(), 600.0, steps=10)
    analysis = {"runs": [run_entry("gb-600K", 600.0, 1.52e-6, SEGREGATION)], "arrhenius": {}}
    (tmp_path / "analysis.json").write_text(json.dumps(analysis))
    browser.open(write_report(tmp_path))
    images = browser.evaluate("[...document.images].map(i => i.complete && i.naturalWidth)")
    assert len(images) >= 4 and all(w and w > 100 for w in images), images
    shot = browser.screenshot()
    assert shot.std() > 20 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 100
    assert browser.problems() == []
