"""The operator's HTTP server: /metrics (Prometheus text) and /healthz (200 only while the stream is up)."""

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


class ListenError(Exception):
    """A server could not listen where the configuration says; the message names the key."""


async def start(app: web.Application, key: str, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (port 0 picks one); returns the runner, to clean up, and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(f"{key}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    bound: int = runner.addresses[0][1]  # the real port when 0 was asked
    return runner, bound
