"""The documentation site: `mkdocs build --strict`, the tutorials' code runs as written, and the built home
and API pages render with their content in headless Chromium (screenshots in build/docs-screenshots/)."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "docs-screenshots"
RUNNABLE = ["index.md", "tutorials/momentum-layer.md", "tutorials/adding-a-model.md"]  # the others hold fragments


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="needs the docs extra: pip install '.[docs]' (in requirements-dev.txt)")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.parametrize("page", RUNNABLE)
def test_the_tutorial_code_runs_as_written(page: str, monkeypatch, capsys) -> None:
    from monode.dynamics import MODELS

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), flags=re.S)
    assert blocks, page
    registered = set(MODELS)
    try:
        for code in blocks:
            exec(compile(code, f"docs/{page}", "exec"), {"__name__": "docs"})
    finally:
        for name in set(MODELS) - registered:  # a tutorial that registers a model leaves the registry as it was
            MODELS.pop(name)
    assert capsys.readouterr().out  # every runnable page prints something it computed


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def chromium(*args: str, profile: Path) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("MONODE_REQUIRE_BROWSER"):
            pytest.fail("MONODE_REQUIRE_BROWSER is set but no chromium is on PATH (apt-get install chromium)")
        pytest.skip("needs Debian's chromium (apt-get install chromium); CI installs it")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1280,1000", "--virtual-time-budget=4000"]  # fmt: skip
    done = subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


PAGES = {  # page -> (screenshot name, what its rendered DOM must hold)
    "": ("home", ['<h1 id="monode"', "Momentum-accelerated neural ODEs", "A momentum layer in your model"]),
    "api/solvers/": ("api-solvers", ["monode.solvers", "odeint_adjoint", "record_stats", "doc-signature"]),
}


@pytest.mark.parametrize("page", list(PAGES))
def test_built_pages_render_their_content_in_chromium(served: str, page: str, tmp_path) -> None:
    name, needles = PAGES[page]
    dom = chromium("--dump-dom", served + page, profile=tmp_path / "profile")
    for needle in needles:
        assert needle in dom, f"{needle!r} missing from the rendered {page or 'home page'}"
    assert 'class="md-nav' in dom  # the theme's navigation was rendered around the content
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    chromium(f"--screenshot={shot}", served + page, profile=tmp_path / "profile")
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000  # a page, not a blank
