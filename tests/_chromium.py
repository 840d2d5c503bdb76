"""Headless Chromium for page tests, driven over the DevTools protocol on a pipe.

``--remote-debugging-pipe`` makes Chromium read protocol commands from file descriptor 3 and
write replies to descriptor 4, NUL-separated JSON: no websocket library, no network port, no
Playwright. Enough of the protocol for the report tests: open a page, evaluate a script,
drag the mouse, take a screenshot of a region.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio", "--force-device-scale-factor=1"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless browser with one page; use as a context manager."""

    def __init__(self, executable: str, *, width: int = 1280, height: int = 900,
                 timeout_s: float = 60.0):
        self.timeout_s = timeout_s
        self._profile = tempfile.mkdtemp(prefix="aet-chromium-")
        to_child_r, self._to_child_w = os.pipe()
        self._from_child_r, from_child_w = os.pipe()
        # the browser wants the pipe on descriptors 3 (commands in) and 4 (replies out)
        cmd = [executable, *FLAGS, f"--user-data-dir={self._profile}",
               f"--window-size={width},{height}", "--remote-debugging-pipe", "about:blank"]
        # bash moves them there (POSIX sh takes single-digit descriptors only)
        shell = " ".join(shlex.quote(c) for c in cmd)
        try:
            self._proc = subprocess.Popen(
                [shutil.which("bash") or "/bin/bash", "-c",
                 f"exec {shell} 3<&{to_child_r} 4>&{from_child_w}"],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self._events: list[dict] = []
        self.width, self.height = width, height
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self._session = self.call("Target.attachToTarget", targetId=target,
                                      flatten=True)["sessionId"]
            self.call("Page.enable", session=True)
            self.call("Runtime.enable", session=True)
            self.call("Emulation.setDeviceMetricsOverride", session=True, width=width,
                      height=height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ protocol
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_child_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe (did it crash?)")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, *, session: bool = False, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self._session
        try:
            os.write(self._to_child_w, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError as e:
            raise RuntimeError("Chromium closed the DevTools pipe (did it start?)") from e
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout_s
        for i, ev in enumerate(self._events):
            if ev.get("method") == method:
                return self._events.pop(i)
        while True:
            ev = self._read_message(deadline)
            if ev.get("method") == method:
                return ev
            self._events.append(ev)

    def events(self, method: str) -> list[dict]:
        """The protocol events of ``method`` received so far (and forgets them)."""
        got = [e for e in self._events if e.get("method") == method]
        self._events = [e for e in self._events if e.get("method") != method]
        return got

    # ------------------------------------------------------------------ page
    def open(self, path_or_url) -> None:
        url = path_or_url if "://" in str(path_or_url) else Path(path_or_url).resolve().as_uri()
        self._events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str):
        res = self.call("Runtime.evaluate", session=True, expression=expression,
                        returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def rect(self, selector: str) -> dict:
        """The element's box in page coordinates (after scrolling it into view)."""
        return self.evaluate(
            f"(function(){{var e=document.querySelector({json.dumps(selector)});"
            "if(!e) return null; e.scrollIntoView({block:'center'});"
            "var r=e.getBoundingClientRect();"
            "return {x:r.left, y:r.top, width:r.width, height:r.height};})()")

    def settle(self) -> None:
        """Wait for two animation frames (pending redraws done)."""
        self.evaluate("new Promise(function(r){requestAnimationFrame(function(){"
                      "requestAnimationFrame(function(){r(1);});});})")

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 10) -> None:
        self.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x0, y=y0)
        self.call("Input.dispatchMouseEvent", session=True, type="mousePressed", x=x0, y=y0,
                  button="left", buttons=1, clickCount=1)
        for k in range(1, steps + 1):
            t = k / steps
            self.call("Input.dispatchMouseEvent", session=True, type="mouseMoved",
                      x=x0 + t * (x1 - x0), y=y0 + t * (y1 - y0), button="left", buttons=1)
        self.call("Input.dispatchMouseEvent", session=True, type="mouseReleased", x=x1, y=y1,
                  button="left", buttons=0, clickCount=1)
        self.settle()

    def screenshot(self, clip: dict | None = None):
        """A screenshot as an RGB ``numpy`` array (of ``clip``, in viewport coordinates)."""
        import numpy as np
        from PIL import Image

        params = {"format": "png"}
        if clip is not None:
            params["clip"] = {**{k: float(clip[k]) for k in ("x", "y", "width", "height")},
                              "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", session=True,
                                          **params)["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        try:
            if self._proc.poll() is None:
                try:
                    self.timeout_s = 5
                    self.call("Browser.close")
                except Exception:  # noqa: BLE001 - closing: kill below if it did not go
                    pass
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        finally:
            for fd in (self._to_child_w, self._from_child_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
