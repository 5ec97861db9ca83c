#!/usr/bin/env python3
"""Browser explorer benchmark: wasm size, time to interactive for a report of N images, and the in-browser
classifier's latency, in headless Chromium (SwiftShader WebGPU, so CPU-bound; a real GPU is faster).

    python3 bench/web-explorer.py REPORT_DIR [IMAGES]     # IMAGES default 2000

REPORT_DIR is a report folder with the explorer (e.g. the demo's runs/demo/report). Its image slots are
repeated, each copy under a new file name and spread over its prompts, until the report holds IMAGES
images (slots × models); the thumbnails are reused. Measured from navigation start (performance.now()) to
the moment the overview's number table, then a prompt page's full image grid, exist (polled every 20 ms).
"""
import gzip
import json
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from browser import Browser, serve  # noqa: E402


def main():
    report_dir = sys.argv[1]
    want = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    tmp = tempfile.mkdtemp(prefix="web-bench-")
    folder = os.path.join(tmp, "report")
    shutil.copytree(report_dir, folder)
    path = os.path.join(folder, "report.json")
    report = json.load(open(path))
    slots, per_slot = report["images"], len(report["models"])
    grown = [dict(s, name=f"copy{i // len(slots)}-{s['name']}") for i, s in enumerate(slots * (want // per_slot // len(slots) + 1))]
    report["images"] = grown[: want // per_slot]
    json.dump(report, open(path, "w"))
    wasm = os.path.join(folder, "pkg", "popalign_web_bg.wasm")
    raw = open(wasm, "rb").read()
    print(f"wasm: {len(raw) / 1e6:.2f} MB raw, {len(gzip.compress(raw, 9)) / 1e6:.2f} MB gzip -9")
    print(f"report.json: {os.path.getsize(path) / 1e6:.2f} MB, {len(report['images'])} slots × {per_slot} models "
          f"= {len(report['images']) * per_slot} images")
    server, base = serve(folder)
    try:
        with Browser(base + "explorer.html#/") as (cdp, session):
            tti = cdp.wait_for(session, "document.querySelector('#summary td[data-metric]') ? performance.now() : null", "the overview")
            print(f"overview interactive: {tti / 1000:.2f} s after navigation start")
            prompts = list(dict.fromkeys(s["prompt"] for s in report["images"]))
            rows = sum(1 for s in report["images"] if s["prompt"] == prompts[0])
            start = cdp.eval(session, "(location.hash = '#/prompt/0', performance.now())")
            done = cdp.wait_for(session, f"document.querySelectorAll('#images tbody tr').length === {rows} ? performance.now() : null", "the page")
            print(f"prompt page with {rows * per_slot} images: {(done - start) / 1000:.2f} s to its full grid")
            cdp.wait_for(session, "(document.getElementById('webgpu')||{}).textContent?.startsWith('WebGPU: ok')", "the page")
            latencies = []
            for i in range(min(11, rows)):
                cell = f"document.querySelectorAll('#images tbody tr')[{i}].querySelector('td.image-cell')"
                t0 = cdp.eval(session, f"({cell}.querySelector('button.classify').click(), performance.now())")
                t1 = cdp.wait_for(session, f"(() => {{ const r = {cell}.querySelector('.browser-result');"
                                  " return r && !r.textContent.endsWith('…') ? performance.now() : null })()",
                                  "a classification")
                latencies.append(t1 - t0)
            print(f"classifier, click to result: first {latencies[0]:.0f} ms (uploads the classifier), then median "
                  f"{statistics.median(latencies[1:]):.0f} ms over {len(latencies) - 1} images")
    finally:
        server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
