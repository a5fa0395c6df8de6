"""Headless Chromium driven over the DevTools protocol (``--remote-debugging-pipe``).

What a page asks for is read from the page's own DevTools session (``Network.requestWillBeSent``
of the page target): the browser's own traffic (component updates, sign-in, Google services
that some builds call whatever the flags) never appears there, so a test can demand that the
page stays on its server without an allow-list of Google host names. Every request that would
leave 127.0.0.1 goes to ``proxy_port`` (a trap), so nothing reaches the internet either way.

No websocket library is needed: with ``--remote-debugging-pipe`` Chromium reads commands on
file descriptor 3 and writes answers and events on 4, one NUL-terminated JSON text each.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BROWSER_FLAGS", "PageRun", "chromium_path", "load_page"]

# Chromium's own background traffic switched off (what can be: some builds still call home).
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter,NetworkTimeServiceQuerying",
)


def chromium_path() -> str | None:
    """The Chromium executable on PATH (Debian's ``chromium``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageRun:
    """What one page load produced."""

    html: str = ""
    screenshot_png: bytes = b""
    requests: list[dict[str, Any]] = field(default_factory=list)  # the page's own requests
    ready: bool = False

    @property
    def request_urls(self) -> list[str]:
        return [str(r["request"]["url"]) for r in self.requests]


class _Pipe:
    """One DevTools connection over Chromium's pipe."""

    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.write_fd, self.read_fd = write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> int:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}, **kw}
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        return self.next_id

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer over the DevTools pipe")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise ConnectionError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        text, self.buffer = self.buffer.split(b"\0", 1)
        return dict(json.loads(text))

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout_s: float = 30.0,
        **kw: Any,
    ) -> dict[str, Any]:
        wanted = self.send(method, params, **kw)
        deadline = time.monotonic() + timeout_s
        while True:
            message = self._read(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            if "method" in message:
                self.events.append(message)


def load_page(
    url: str,
    profile: Path,
    *,
    proxy_port: int,
    window: tuple[int, int],
    ready_js: str,
    timeout_s: float = 90.0,
) -> PageRun:
    """Open ``url`` in a fresh headless Chromium, wait until ``ready_js`` is true, and return the
    page's HTML, a screenshot and the requests the page itself made."""
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("chromium is not installed")
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    actions = [
        (os.POSIX_SPAWN_DUP2, devnull, 0),
        (os.POSIX_SPAWN_DUP2, devnull, 1),
        (os.POSIX_SPAWN_DUP2, devnull, 2),
        (os.POSIX_SPAWN_DUP2, to_browser_r, 3),
        (os.POSIX_SPAWN_DUP2, from_browser_w, 4),
    ]
    argv = [
        exe,
        *BROWSER_FLAGS,
        "--remote-debugging-pipe",
        f"--user-data-dir={profile}",
        f"--proxy-server=http://127.0.0.1:{proxy_port}",  # all that would leave 127.0.0.1
        f"--window-size={window[0]},{window[1]}",
        "about:blank",
    ]
    pid = os.posix_spawn(exe, argv, dict(os.environ), file_actions=actions)
    for fd in (to_browser_r, from_browser_w, devnull):
        os.close(fd)
    pipe = _Pipe(to_browser_w, from_browser_r)
    run = PageRun()
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for method in ("Network.enable", "Page.enable", "Runtime.enable"):
            pipe.call(method, sessionId=session)
        pipe.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": window[0], "height": window[1], "deviceScaleFactor": 1, "mobile": False},
            sessionId=session,
        )
        pipe.call("Page.navigate", {"url": url}, sessionId=session)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answer = pipe.call(
                "Runtime.evaluate",
                {"expression": f"Boolean({ready_js})", "returnByValue": True},
                sessionId=session,
            )
            if answer.get("result", {}).get("value") is True:
                run.ready = True
                break
            time.sleep(0.2)
        time.sleep(0.5)  # let the last tiles settle before the picture
        run.html = str(
            pipe.call(
                "Runtime.evaluate",
                {"expression": "document.documentElement.outerHTML", "returnByValue": True},
                sessionId=session,
            )["result"]["value"]
        )
        shot = pipe.call("Page.captureScreenshot", {"format": "png"}, sessionId=session)
        run.screenshot_png = base64.b64decode(shot["data"])
        run.requests = [
            e["params"]
            for e in pipe.events
            if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == session
        ]
    finally:
        with contextlib.suppress(OSError):
            pipe.send("Browser.close")
        for fd in (to_browser_w, from_browser_r):
            os.close(fd)
        _reap(pid)
    return run


def _reap(pid: int, timeout_s: float = 10.0) -> None:
    """Wait for the browser to exit; kill it (by its id) if it does not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
