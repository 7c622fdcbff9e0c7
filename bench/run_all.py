"""Run every benchmark under bench/ (`make bench`), each in its own process so timings don't interfere.

Each `bench/bench_*.py` prints one JSON object per measurement on stdout; this collects them into
`bench/results.json` alongside the machine they were taken on.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def main() -> int:
    results: dict[str, list[dict]] = {}
    failed = []
    for script in sorted(BENCH_DIR.glob("bench_*.py")):
        module = f"bench.{script.stem}"
        print(f"== {module}", flush=True)
        completed = subprocess.run([sys.executable, "-m", module], cwd=BENCH_DIR.parent, capture_output=True, text=True)
        sys.stderr.write(completed.stderr)
        if completed.returncode != 0:
            failed.append(module)
            continue
        records = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
        for record in records:
            print(json.dumps(record))
        results[module] = records
    machine = {"python": platform.python_version(), "processor": platform.processor(), "cpus": os.cpu_count()}
    (BENCH_DIR / "results.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
