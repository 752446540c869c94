"""The soak benchmark (benchmarks/soak.py) in its short form: 20 streaming clients for 5 s plus steady
non-streamed load, against a gateway and a fake upstream in their own processes — no error, no task or
upstream connection left behind, memory flat. The full run (200 clients × 60 s) is in docs/concepts/reliability.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.reliability.processes import ROOT


def test_soak_smoke(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--clients", "20", "--duration", "5",
                          "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert out.exists(), run.stderr[-2000:]
    summary = json.loads(out.read_text())
    assert summary["errors"] == 0, summary["error_kinds"]
    assert summary["streams"] >= 40 and summary["plain"] >= 50
    assert summary["leaks"] == []
    assert summary["after"]["in_use"] == 0 and summary["after"]["tasks"] <= summary["baseline"]["tasks"] + 2
    assert summary["in_use_max"] >= 10  # the load really was concurrent
    assert run.returncode == 0
