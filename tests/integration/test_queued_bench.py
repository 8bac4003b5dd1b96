"""bench/queued.py keeps working: a short run reports both paths, their ratio and the queue's writes (its speed is
not judged here; docs/benchmarks.md has the measured run)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_bench import _run


def test_the_queued_bench_reports_both_paths_and_the_disk_writes(tmp_path: Path) -> None:
    out = tmp_path / "queued.json"
    args = ("-n", "300", "--window", "10", "--conversations", "5", "--repeat", "1", "--out", str(out))
    result = _run("bench.queued", *args, timeout=180)
    assert json.loads(out.read_text()) == result
    for name in ("direct", "queued"):
        assert result[name]["errors"] == 0, result[name]  # type: ignore[index]
        assert result[name]["msgs_per_s"] > 0  # type: ignore[index]
    assert result["ratio"] > 0  # type: ignore[operator]
    writes = result["queued"]["component_writes_per_msg"]  # type: ignore[index]
    assert writes["disk_bytes"] > 0 and 0 < writes["sqlite_transactions"] <= 3
    assert result["direct"]["component_writes_per_msg"]["disk_bytes"] < writes["disk_bytes"]  # type: ignore[index]
    assert result["one_conversation"]["queued"]["errors"] == 0  # type: ignore[index]
