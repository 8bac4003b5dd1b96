"""bench/instances.py keeps working: a short run with one and two instances on ejabberd reports the aggregate rate,
each instance's messages and CPU time per message, and the projected scaling (its speed is not judged here;
docs/benchmarks.md has the measured run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.test_bench import _run


def test_the_instances_bench_reports_each_instance_and_the_projected_scaling(tmp_path: Path) -> None:
    out = tmp_path / "instances.json"
    args = ("--instances", "1,2", "--clients", "6", "--window", "12", "--warmup", "0.5", "--duration", "2")
    result = _run("bench.instances", *args, "--out", str(out), timeout=180)
    assert json.loads(out.read_text()) == result
    runs: list[dict[str, Any]] = result["runs"]  # type: ignore[assignment]
    assert [run["instances"] for run in runs] == [1, 2]
    for run in runs:
        assert run["errors"] == 0 and run["msgs_per_s"] > 0, run
        per_instance = run["per_instance"]
        assert [one["id"] for one in per_instance] == [f"i{n}" for n in range(run["instances"])]
        assert all(one["messages"] > 0 and one["cpu_us_per_msg"] > 0 for one in per_instance), per_instance  # spread
        # each message answered was received by one instance (the counters are read a few ms apart from the replies)
        assert abs(sum(one["messages"] for one in per_instance) - run["answered"]) <= 0.05 * run["answered"]
        assert all(run["cpu_us_per_msg"][name] > 0 for name in ("components", "ejabberd", "bot", "load"))
    one, two = (run["projected"] for run in runs)
    assert one["scaling_even"] == 1.0
    assert two["scaling_even"] == round(two["even_msgs_per_s"] / one["even_msgs_per_s"], 2)
