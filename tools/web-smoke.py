#!/usr/bin/env python3
"""Smoke test of the built browser app (www/ + www/pkg/) in real headless Chromium, standard library only.

Serves www/ on 127.0.0.1, opens it in headless Chromium with the SwiftShader WebGPU adapter (no GPU
needed), waits until the app's WebGPU probe has finished, then checks the DOM: the Leptos-rendered title,
the "no report" message (www/ has no report.json), and "WebGPU: ok". tools/web-e2e.py tests a real report.

    bash tools/build-web.sh && python3 tools/web-smoke.py      # needs: apt-get install chromium

Env: WEB_SMOKE_TIMEOUT (seconds, default 120), WEB_SMOKE_EXPECT_GPU=0 to accept "WebGPU not available"
(then only checks that the app rendered); see tools/browser.py for the browser's.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import Browser, serve  # noqa: E402

WWW = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "www")


def main():
    if not os.path.isfile(os.path.join(WWW, "pkg", "popalign_web_bg.wasm")):
        sys.exit("web-smoke: www/pkg is missing; run tools/build-web.sh first")
    timeout = float(os.environ.get("WEB_SMOKE_TIMEOUT", "120"))
    expect_gpu = os.environ.get("WEB_SMOKE_EXPECT_GPU", "1") != "0"
    server, base = serve(WWW)
    url = base + "index.html"
    failures = []
    browser = Browser(url, timeout)
    t0 = time.monotonic()
    try:
        with browser as (cdp, session):
            status = None
            while time.monotonic() - t0 < timeout:
                status = cdp.eval(session, "(document.getElementById('webgpu') || {}).textContent || null")
                boot = cdp.eval(session, "(document.getElementById('boot') || {}).textContent || null")
                if boot and ("failed" in boot or "file://" in boot):
                    break  # index.html's loader reported an error
                if status and not status.startswith("WebGPU: probing"):
                    break
                time.sleep(0.25)
            title = cdp.eval(session, "(document.querySelector('main#app h1#title') || {}).textContent || null")
            body = cdp.eval(session, "document.body.innerText")
            print(f"web-smoke: {url} settled in {time.monotonic() - t0:.1f}s")
            print(f"web-smoke: title:  {title!r}")
            print(f"web-smoke: status: {status!r}")
            if title != "popalign report explorer":
                failures.append("Leptos-rendered title missing")
            if "No report is loaded." not in (body or ""):
                failures.append("no-report message missing")
            if expect_gpu and not (status or "").startswith("WebGPU: ok"):
                failures.append("WebGPU probe did not report ok")
            if failures:
                print("--- DOM ---\n" + cdp.eval(session, "document.documentElement.outerHTML"), file=sys.stderr)
                print("--- browser log ---\n" + browser.log_tail(), file=sys.stderr)
    except Exception as e:  # report and fail
        failures.append(f"{type(e).__name__}: {e}")
    finally:
        server.shutdown()
    if failures:
        sys.exit("web-smoke: FAILED: " + "; ".join(failures))
    print("web-smoke: ok")


if __name__ == "__main__":
    main()
