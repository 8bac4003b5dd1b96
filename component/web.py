"""The operator's HTTP server: /metrics (Prometheus text) and /healthz (200 only while the stream is up).

Served by `component.http_server.serve` with `http_server.WEB_LIMITS`.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from component.metrics import Metrics


def make_app(metrics: Metrics, is_up: Callable[[], bool]) -> web.Application:
    async def metrics_view(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        if is_up():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="xmpp stream down\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    return app
