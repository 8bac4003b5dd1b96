"""The benchmark tools keep working: each runs briefly and reports figures (their speed is not judged here;
docs/benchmarks.md has the measured runs)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.harness.parts import REPO


def _run(module: str, *args: str, timeout: float = 120) -> dict[str, object]:
    """Run a bench tool as the docs say, `python -m bench.NAME` from the repository's root; its JSON result."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    start = result.stdout.index("{")  # the JSON follows any progress lines
    value = json.loads(result.stdout[start:])
    assert isinstance(value, dict)
    return value


def test_component_cpu_reports_the_components_cost_per_message() -> None:
    result = _run("bench.component_cpu", "-n", "500", "--window", "10")
    assert (result["n"], result["errors"]) == (500, 0)
    assert isinstance(result["msgs_per_s"], float) and result["msgs_per_s"] > 0
    assert isinstance(result["component_cpu_us_per_msg"], float) and result["component_cpu_us_per_msg"] > 0


def test_bench_runs_all_three_paths_on_prosody_with_both_bots() -> None:
    for bot in ("lean", "example"):
        result = _run("bench.bench", "--server", "prosody", "--bot", bot, "-n", "200", "--window", "5")
        assert result["bot"] == bot
        window = result["windows"]["5"]  # type: ignore[index]
        for path in ("component", "floor", "floor_plain"):
            assert window[path]["errors"] == 0, (path, window[path])
            assert window[path]["msgs_per_s"] > 0
        assert window["component"]["cpu_us_per_msg"]["component"] > 0
        assert window["ratio"] > 0
