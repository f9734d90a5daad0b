"""The live dashboard's HTTP server: a small JSON API and one page, on aiohttp.

Routes (all ``GET``):

* ``/`` — the page; ``/assets/dashboard.js`` and ``/assets/plotly.min.js`` (from the installed
  ``plotly`` package, so the page works without network access);
* ``/api/runs`` — every run with its identity, status, row count and last row;
* ``/api/runs/{id}`` — one run, with its resolved config;
* ``/api/runs/{id}/metrics?since=N`` — rows ``N..`` as columns (the page polls this and
  extends its traces without reloading);
* ``/files/{path}`` — a file under the results directory (config, summary, metrics), served
  as plain text or as a download, never as a page or script the browser would run.

Safety: binds 127.0.0.1 unless told otherwise; when bound to loopback, requests whose
``Host`` header is not a loopback name are refused (a DNS-rebinding page cannot read results);
runs are addressed by opaque ids; ``/files`` rejects ``..``, absolute, encoded and symlinked
escapes by resolving the path and requiring it to stay inside the root; responses carry a
strict Content-Security-Policy (no inline or third-party scripts). Anyone who can write
under the results directory controls what ``/files`` returns, and ``script-src 'self'``
would let a planted ``.js`` run as the dashboard's own: so files are ``text/plain`` (known
text types) or ``application/octet-stream`` with ``Content-Disposition: attachment``. A run
whose summary or config is damaged is left out with a warning the page shows, so one bad
directory cannot break the view of the others. Responses are capped in size.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from flsim.dashboard.page import DASHBOARD_JS, index_html
from flsim.dashboard.store import RunStore
from flsim.dashboard.studies import add_study_routes
from flsim.results.loading import CONFIG_FILE, DamagedRun, _read_yaml

log = logging.getLogger(__name__)

STORE_KEY = web.AppKey("store", RunStore)
OPTIONS_KEY = web.AppKey("options", dict)

_ID = "{run_id:[0-9a-f]{12}}"
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TEXT_SUFFIXES = {".yaml", ".yml", ".json", ".jsonl", ".txt", ".log", ".csv"}
#: Largest file ``/files`` serves, and longest path segment it accepts (NAME_MAX).
MAX_FILE_BYTES = 64 << 20
MAX_SEGMENT = 255
#: Most damaged-run warnings listed in ``/api/runs``.
MAX_WARNINGS = 20


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP literal, brackets allowed) is this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The name part of a ``Host`` header: ``[::1]:8050`` → ``::1``, ``a:8050`` → ``a``."""
    if header.startswith("["):
        return header[1 : header.index("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@web.middleware
async def _guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Host check (DNS rebinding) and security headers on every response."""
    options = request.app[OPTIONS_KEY]
    if options["loopback"] and not is_loopback(_host_name(request.headers.get("Host", ""))):
        return web.Response(status=421, text="misdirected request: this dashboard only answers localhost\n")
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(exc.headers)
        raise
    _secure(response.headers)
    return response


def _secure(headers: Any) -> None:
    headers.setdefault("Content-Security-Policy", _CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Cache-Control", "no-store")


async def _index(request: web.Request) -> web.Response:
    options = request.app[OPTIONS_KEY]
    return web.Response(text=index_html(options["title"], options["poll_ms"]), content_type="text/html")


async def _app_js(request: web.Request) -> web.Response:
    return web.Response(text=DASHBOARD_JS, content_type="application/javascript")


_PLOTLY_JS: str | None = None


async def _plotly_js(request: web.Request) -> web.Response:
    global _PLOTLY_JS
    if _PLOTLY_JS is None:
        from plotly.offline import get_plotlyjs

        _PLOTLY_JS = get_plotlyjs()
    response = web.Response(text=_PLOTLY_JS, content_type="application/javascript")
    response.headers["Cache-Control"] = "max-age=86400"
    return response


async def _favicon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _api_runs(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    runs = [r.describe() for r in store.runs()]
    warnings = store.warnings()
    if len(warnings) > MAX_WARNINGS:
        warnings = [*warnings[:MAX_WARNINGS], f"... and {len(warnings) - MAX_WARNINGS} more damaged runs"]
    return web.json_response({"root": store.root.name, "runs": runs, "warnings": warnings})


def _run_or_404(request: web.Request) -> Any:
    run = request.app[STORE_KEY].get(request.match_info["run_id"])
    if run is None:
        raise web.HTTPNotFound(text="no such run\n")
    return run


async def _api_run(request: web.Request) -> web.Response:
    run = _run_or_404(request)
    body = run.describe()
    try:
        body["config"] = _read_yaml(run.path / CONFIG_FILE)
    except DamagedRun:  # replaced since the last refresh: the next poll lists it as damaged
        raise web.HTTPNotFound(text="no such run\n") from None
    body["summary"] = run.summary
    return web.json_response(body)


async def _api_metrics(request: web.Request) -> web.Response:
    raw = request.query.get("since", "0")
    if not re.fullmatch(r"\d{1,12}", raw):
        raise web.HTTPBadRequest(text="since must be a non-negative integer\n")
    run = _run_or_404(request)
    return web.json_response(run.metrics_since(int(raw)))


def resolve_under(root: Path, tail: str) -> Path | None:
    """``root/tail`` if it names a regular file inside ``root``, else ``None``.

    ``tail`` is the already URL-decoded path from the route. It is decoded once more so that
    a double-encoded ``%252e%252e`` cannot survive as ``..`` into a later layer; then anything
    absolute, with ``..`` or ``.`` segments, backslashes or NUL bytes is refused before the
    filesystem is touched, and the resolved path (symlinks followed) must still be inside
    the resolved root.
    """
    for text in (tail, unquote(tail)):
        if not text or "\x00" in text or "\\" in text or text.startswith("/"):
            return None
        if any(part in ("..", ".") or len(part.encode()) > MAX_SEGMENT for part in text.split("/")):
            return None
    parts = PurePosixPath(tail).parts
    try:
        target = root.joinpath(*parts).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return None
    except OSError:  # a name too long for the filesystem, a loop of links: not a file here
        return None
    return target


async def _files(request: web.Request) -> web.StreamResponse:
    root = request.app[STORE_KEY].root
    target = resolve_under(root, request.match_info["tail"])
    if target is None:
        raise web.HTTPNotFound(text="not found\n")
    if target.stat().st_size > MAX_FILE_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FILE_BYTES, actual_size=target.stat().st_size)
    response = web.FileResponse(target)
    if target.suffix.lower() in _TEXT_SUFFIXES:
        response.content_type = "text/plain"
        response.charset = "utf-8"
    else:  # .html, .js, .svg, anything: a download, never a document the browser renders
        response.content_type = "application/octet-stream"
        response.headers["Content-Disposition"] = "attachment"
    return response


def make_app(
    results_dir: str | Path, *, host: str = "127.0.0.1", poll_ms: int = 2000, title: str | None = None
) -> web.Application:
    """The aiohttp application serving ``results_dir`` (see the module docstring)."""
    store = RunStore(results_dir)
    app = web.Application(middlewares=[_guard])
    app[STORE_KEY] = store
    app[OPTIONS_KEY] = {
        "loopback": is_loopback(host),
        "poll_ms": int(poll_ms),
        "title": title or f"flsim dashboard — {store.root.name}",
    }
    app.router.add_get("/", _index)
    app.router.add_get("/favicon.ico", _favicon)
    app.router.add_get("/assets/dashboard.js", _app_js)
    app.router.add_get("/assets/plotly.min.js", _plotly_js)
    app.router.add_get("/api/runs", _api_runs)
    app.router.add_get(f"/api/runs/{_ID}", _api_run)
    app.router.add_get(f"/api/runs/{_ID}/metrics", _api_metrics)
    app.router.add_get("/files/{tail:.+}", _files)
    add_study_routes(app, STORE_KEY)  # /api/runs/{id}/study and /assets/studies.js
    return app


def serve(results_dir: str | Path, host: str = "127.0.0.1", port: int = 8050, poll_ms: int = 2000) -> None:
    """Run the dashboard until interrupted (the ``flsim dashboard`` command)."""
    if not is_loopback(host):
        log.warning(
            "binding %s: anyone who can reach this machine can read every file under %s", host, results_dir
        )
    app = make_app(results_dir, host=host, poll_ms=poll_ms)
    log.info(
        "flsim dashboard on http://%s:%d/ (Ctrl-C to stop)", host if ":" not in host else f"[{host}]", port
    )
    web.run_app(app, host=host, port=port, print=None, access_log=None, handle_signals=True)


@dataclass
class RunningServer:
    """A dashboard served from a background thread (tests, screenshots, notebooks)."""

    url: str
    stop: Callable[[], None]


@contextlib.contextmanager
def background_server(
    results_dir: str | Path, host: str = "127.0.0.1", port: int = 0, poll_ms: int = 2000
) -> Iterator[RunningServer]:
    """Serve ``results_dir`` on a free port in a daemon thread for the ``with`` block."""
    loop = asyncio.new_event_loop()
    app = make_app(results_dir, host=host, poll_ms=poll_ms)
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()
    bound: dict[str, Any] = {}

    def _run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, host, port)
        loop.run_until_complete(site.start())
        bound["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=_run, name="flsim-dashboard", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("dashboard server did not start")

    def stop() -> None:
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    try:
        yield RunningServer(url=f"http://{host}:{bound['port']}", stop=stop)
    finally:
        stop()
