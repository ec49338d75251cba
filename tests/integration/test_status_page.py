"""The admin status page in a real headless Chromium: it renders live data from /api/status
(instance rows, the SVG chart, scaling decisions) and a screenshot lands in benchmarks/results/.

Chromium is Debian's ``chromium`` package. The session fixture installs it with apt-get when it
is absent and we are root; elsewhere the one test here is skipped, saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.loadgen import Load, count, service
from tests.proxyproc import APPS, ROOT, RunningProxy

pytestmark = pytest.mark.integration

SCREENSHOT = ROOT / "benchmarks" / "results" / "status-page.png"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def _find() -> str | None:
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )


@pytest.fixture(scope="session")
def chromium() -> str:
    found = _find()
    if found:
        return found
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:  # a stale package index: refresh it once and retry
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=300)
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    found = _find()
    if not found:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"chromium could not be installed with apt-get: {tail[0]}")
    return found


@pytest.fixture
def profile() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gfe-chromium-") as d:
        yield Path(d)


def run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(1200)  # the first run may install chromium
def test_admin_status_page_renders_live_data_in_headless_chromium(
    chromium: str, profile: Path, proxy_factory: Callable[..., RunningProxy]
) -> None:
    p = proxy_factory(str(APPS / "scaling" / "auto.yaml"))
    url = f"http://127.0.0.1:{p.admin_port}/"
    # The page is looked at under load: instances scaled up, requests in flight, history.
    with Load(p, "/sleep?s=0.25", clients=6):
        p.wait_for(lambda: count(service(p), "ready") == 4, what="the scale-up")
        p.wait_for(lambda: len(service(p)["history"]) >= 8, what="a few seconds of history")

        # The page fetches /api/status from its script; --dump-dom prints the DOM after it ran.
        dom = run_chromium(chromium, profile, "--virtual-time-budget=4000", "--dump-dom", url)
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        for iid in ("i-1", "i-2", "i-3", "i-4"):
            assert f'data-instance="{iid}"' in html  # instance rows from /api/status
        points = re.search(r'<svg class="chart"[^>]*data-points="(\d+)"', html)
        assert points
        assert int(points.group(1)) >= 8
        assert 'class="series-instances"' in html
        assert 'class="series-inflight"' in html
        assert "needs 4" in html  # the scaling decision, with its reason
        assert re.search(r'data-polls="[1-9]\d*"', html)  # the poll loop ran: live updates

        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.unlink(missing_ok=True)
        shot = run_chromium(
            chromium,
            profile,
            "--virtual-time-budget=4000",
            "--window-size=1280,1180",
            f"--screenshot={SCREENSHOT}",
            url,
        )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
