"""The component as its own process (`python -m component --config FILE`), as an operator runs it: started, stopped
with a signal (SIGKILL included) and started again on the same configuration; its /healthz and /metrics read over
HTTP. No pytest in here."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import tomlkit
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.clients import WAIT
from tests.harness.parts import COMPONENT, REPO, SECRET


def write_config(path: Path, component_port: int, bot_url: str, web_port: int, **sections: dict[str, Any]) -> Path:
    """A configuration file for the component at `path`: COMPONENT on the server's component port (the secret comes
    from the environment), the bot at `bot_url`, /metrics and /healthz on `web_port`; `sections` add or override."""
    raw: dict[str, dict[str, Any]] = {
        "component": {"jid": COMPONENT, "port": component_port},
        "bot": {"url": bot_url, "timeout": 5},
        "web": {"listen": f"127.0.0.1:{web_port}"},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path.write_text(tomlkit.dumps(raw))
    return path


class ComponentProcess:
    """The component as a separate process, started again on the same configuration at will; its output (both
    streams) goes to `log`. `token` is sent as the bearer token of every GET (the send API's)."""

    def __init__(self, config: Path, web_port: int, log: Path, api_port: int = 0, token: str = "") -> None:
        self.config, self.web_port, self.api_port, self.log, self.token = config, web_port, api_port, log, token
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, wait: bool = True) -> None:
        """Start the process; with `wait`, return once its /healthz says the stream is up."""
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "component",
                "--config",
                str(self.config),
                cwd=REPO,
                env={**os.environ, "XMPP_COMPONENT_SECRET": SECRET},
                stdout=log,
                stderr=log,
            )
        if wait:
            await self.wait_up()

    async def wait_up(self, timeout: float = WAIT) -> None:
        """Return once /healthz answers 200 (the stream is up)."""
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            while await self.get("/healthz", self.web_port) != 200:
                assert self.proc.returncode is None, self.log.read_text()
                await asyncio.sleep(0.05)

    async def get(self, path: str, port: int) -> int | None:
        """The status of GET `path` on 127.0.0.1:`port`; None when nothing answers."""
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {self.token}"}) as r,
            ):
                return r.status
        except aiohttp.ClientError:
            return None

    async def metric(self, name: str, **labels: str) -> float:
        """A sample of the process's /metrics (e.g. `xmpp_stanzas_received_total`, kind="message"); 0 if absent."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.web_port}/metrics") as resp,
        ):
            text = await resp.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    async def stop(self, sig: signal.Signals) -> int:
        """Send `sig` and return the exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), WAIT)

    async def close(self) -> None:
        """Kill the process if it still runs (the end of a test)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
