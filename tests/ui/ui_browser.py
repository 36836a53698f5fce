"""A minimal headless Chromium driver over the DevTools protocol (no Playwright download needed).

Enough to do what a person does on a page: open it, wait for text, click an element by its text,
check an image rendered, take a screenshot.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

from websockets.sync.client import connect

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1600,1000", "--remote-debugging-port=0"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    def __init__(self, profile_dir: Path):
        self.process = subprocess.Popen([chromium_path(), *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        browser_ws = None
        while time.monotonic() < deadline and browser_ws is None:
            line = self.process.stderr.readline()
            match = re.search(r"DevTools listening on (ws://\S+)", line or "")
            if match:
                browser_ws = match.group(1)
        if browser_ws is None:
            self.close()
            raise RuntimeError("chromium did not start its DevTools endpoint")
        self.ws = connect(browser_ws, max_size=64 * 1024 * 1024, open_timeout=20)
        self._id = 0
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)

    def call(self, method: str, params: dict | None = None, session: bool = False, timeout: float = 60) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = json.loads(self.ws.recv(timeout=timeout))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(method)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=True)
        return result.get("result", {}).get("value")

    def open(self, url: str, wait_for_text: str, timeout: float = 60) -> None:
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait(f"document.body && document.body.innerText.includes({json.dumps(wait_for_text)})", timeout)

    def wait(self, condition: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(f"Boolean({condition})"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"page never satisfied: {condition}")

    def click_text(self, text: str) -> None:
        found = self.evaluate(
            "(() => { const all = [...document.querySelectorAll('button, a, span, div')];"
            f" const el = all.reverse().find(e => e.innerText && e.innerText.trim() === {json.dumps(text)});"
            " if (!el) return false; el.click(); return true; })()")
        if not found:
            raise LookupError(f"no element with text {text!r}")

    def click_selector(self, selector: str, times: int = 1) -> None:
        """Click the button holding the element matching a CSS selector (e.g. an icon's aria-label)."""
        for _ in range(times):
            found = self.evaluate(
                f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
                " if (!el) return false; (el.closest('button') || el).click(); return true; })()")
            if not found:
                raise LookupError(f"no element matching {selector!r}")
            time.sleep(0.3)

    def text(self) -> str:
        return self.evaluate("document.body.innerText") or ""

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
