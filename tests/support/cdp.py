"""Open a local HTML file in headless Chromium and report what the page did, over the DevTools protocol.

Stdlib only: Chromium's ``--remote-debugging-pipe`` speaks CDP as NUL-terminated JSON on fds 3 (in)
and 4 (out), so there is no port, no websocket and no extra dependency. A tiny exec shim puts our
pipe ends on fds 3/4 (subprocess cannot renumber descriptors) and then becomes Chromium.

What is recorded: every request the page sent (``Network.requestWillBeSent``), console errors,
uncaught exceptions and browser log errors, the rendered text, facts evaluated in the page, and a
full-page PNG screenshot. ``--host-resolver-rules=MAP * ~NOTFOUND`` makes sure that even a request
we failed to notice could not reach a host.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--no-default-browser-check",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--remote-debugging-pipe", "--enable-logging=stderr", "--v=0")

_SHIM = ("import fcntl, os, sys\n"
         "a, b = (fcntl.fcntl(int(x), fcntl.F_DUPFD_CLOEXEC, 10) for x in sys.argv[1:3])\n"
         "os.dup2(a, 3); os.dup2(b, 4)\n"
         "os.execv(sys.argv[3], sys.argv[3:])\n")

# Evaluated in the page after load: facts a report must satisfy.
PAGE_FACTS = """(() => ({
  text: document.body ? document.body.innerText : "",
  textContent: document.documentElement.textContent,
  title: document.title,
  scripts: document.querySelectorAll("script").length,
  handlers: [...document.querySelectorAll("*")].filter(e => [...e.attributes].some(a => a.name.startsWith("on"))).length,
  pwned: typeof window.__pwned !== "undefined",
  images: document.images.length,
  imagesDecoded: [...document.images].filter(i => i.complete && i.naturalWidth > 0).length,
  nonDataSources: [...document.querySelectorAll("[src],[href],[srcset],[poster]")]
      .map(e => e.getAttribute("src") || e.getAttribute("href") || e.getAttribute("srcset") || e.getAttribute("poster"))
      .filter(u => u && !u.startsWith("data:") && !u.startsWith("#")),
  svgs: document.querySelectorAll("svg").length,
  bannerKind: (document.getElementById("kpi-banner") || {dataset: {}}).dataset.kind || null,
  trajectory: [...document.querySelectorAll("#trajectory-table tbody tr")].map(tr => ({
      iteration: tr.dataset.iteration, cls: tr.className,
      cells: [...tr.cells].map(td => td.innerText.trim()),
      values: [...tr.cells].map(td => td.dataset.value === undefined ? null : td.dataset.value)})),
}))()"""


class CDPError(RuntimeError):
    pass


@dataclass
class PageReport:
    url: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    screenshot: bytes = b""
    browser_log: str = ""

    def outside_requests(self) -> list[str]:
        """Requests other than the page itself and data: URIs."""
        return [u for u in self.requests if u != self.url and not u.startswith("data:") and u != "about:blank"]


class Chromium:
    """One headless Chromium driven over its DevTools pipe (use as a context manager)."""

    def __init__(self, binary: str, profile: Path, log: Path, timeout: float = 60.0):
        self.binary, self.profile, self.log_path, self.timeout = binary, Path(profile), Path(log), timeout
        self._id = 0
        self._buf = b""
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> "Chromium":
        self.profile.mkdir(parents=True, exist_ok=True)
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        self._log = open(self.log_path, "wb")
        argv = [sys.executable, "-c", _SHIM, str(to_chrome_r), str(from_chrome_w), self.binary, *FLAGS,
                f"--user-data-dir={self.profile}", "about:blank"]
        self.proc = subprocess.Popen(argv, pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close", timeout=10)
                except (CDPError, OSError):
                    pass
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the process group this object started (its own session)
            self.proc.wait(timeout=10)
        finally:
            for fd in (self._to_chrome, self._from_chrome):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._log.close()

    def browser_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # ------------------------------------------------------------------ protocol
    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"no answer from Chromium in time; its log:\n{self.browser_log()}")
            ready, _, _ = select.select([self._from_chrome], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise CDPError(f"Chromium closed the DevTools pipe (exit {self.proc.poll()}); its log:\n"
                                   f"{self.browser_log()}")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._to_chrome, data):]
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise CDPError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, session: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (timeout or self.timeout)
        seen = len(self.events)
        for m in self.events[:seen]:
            if m.get("method") == method and m.get("sessionId") == session:
                return m
        while True:
            m = self._read_message(deadline)
            self.events.append(m)
            if m.get("method") == method and m.get("sessionId") == session:
                return m


def _console_text(m: dict[str, Any]) -> str | None:
    p = m.get("params", {})
    method = m.get("method")
    if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
        return "console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
    if method == "Runtime.exceptionThrown":
        d = p.get("exceptionDetails", {})
        return "exception: " + str((d.get("exception") or {}).get("description") or d.get("text"))
    if method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
        e = p["entry"]
        return f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip()
    return None


def inspect(binary: str, html: Path, work: Path, *, width: int = 1280, settle: float = 0.3) -> PageReport:
    """Load ``html`` from disk in a fresh profile; return what it requested, logged, showed and looked like."""
    url = html.resolve().as_uri()
    work.mkdir(parents=True, exist_ok=True)
    with Chromium(binary, work / "profile", work / "chromium.log") as chrome:
        target = chrome.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = chrome.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Runtime", "Log", "Page"):
            chrome.send(f"{domain}.enable", session=session)
        chrome.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                            "mobile": False}, session=session)
        chrome.send("Page.navigate", {"url": url}, session=session)
        chrome.wait_event("Page.loadEventFired", session)
        time.sleep(settle)  # let late console/network events arrive before reading them
        facts = chrome.send("Runtime.evaluate", {"expression": PAGE_FACTS, "returnByValue": True},
                            session=session)["result"]["value"]
        metrics = chrome.send("Page.getLayoutMetrics", session=session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = chrome.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": min(int(size["height"]), 16000), "scale": 1}},
            session=session, timeout=120)
        import base64

        report = PageReport(url=url, facts=facts, screenshot=base64.b64decode(shot["data"]))
        for m in chrome.events:
            if m.get("method") == "Network.requestWillBeSent":
                report.requests.append(m["params"]["request"]["url"])
            text = _console_text(m)
            if text:
                report.console_errors.append(text)
        report.browser_log = chrome.browser_log()
    return report
