"""Time a quarterly run on the demo data and record it in bench/results/.

Measures the whole run, each notebook, the share of notebook time spent
starting kernels and running the setup cell (imports, reading the table),
the time spent rendering HTML, and peak memory: the largest total resident
memory of the runner and all its workers and kernels together (sampled with
psutil), and the largest single child process (getrusage).

Run it with ``make bench``; see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from icp_lib.config import load_config, resolve_data_dir
from icp_lib.runner import NOTEBOOKS, run_quarterly

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


class PeakMemory:
    """Sample the summed RSS of this process and its descendants."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _tree_rss(me))


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def prepare_demo(config_path: Path) -> float:
    """Write the demo data if it is missing; return the seconds it took."""
    config = load_config(config_path)
    folder = resolve_data_dir(config)
    if not config.demo or folder.is_dir():
        return 0.0
    from icp_lib.demo import write_demo

    started = time.perf_counter()
    write_demo(folder)
    return time.perf_counter() - started


def summarize_notebooks(run) -> dict[str, dict[str, float]]:
    """Per notebook: mean and max seconds over segments, startup and render."""
    out = {}
    for name in NOTEBOOKS:
        runs = [
            r
            for s in run.segments
            for r in s.notebooks
            if r.notebook == name and r.status != "skipped"
        ]
        if not runs:
            continue
        out[name] = {
            "mean_seconds": round(statistics.mean(r.seconds for r in runs), 2),
            "max_seconds": round(max(r.seconds for r in runs), 2),
            "mean_startup_seconds": _mean(r.startup_seconds for r in runs),
            "mean_render_seconds": _mean(r.render_seconds for r in runs),
        }
    return out


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.mean(values), 2) if values else None


def measure(config_path: Path, *, jobs: int | None, fresh_kernels: bool) -> dict:
    """Run the quarterly job once into a temporary folder and measure it."""
    demo_seconds = prepare_demo(config_path)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="icp-bench-") as tmp:
        started = time.perf_counter()
        with PeakMemory() as memory:
            run = run_quarterly(
                config_path, reports_dir=tmp, jobs=jobs, fresh_kernels=fresh_kernels
            )
        total = time.perf_counter() - started
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    record = _record(run, total, memory.peak, child_kb, demo_seconds, jobs)
    record["fresh_kernels"] = fresh_kernels
    # Other work on the machine slows a run down; keep the context with it.
    record["machine"]["load_average_before"] = round(load_before, 2)
    record["machine"]["load_average_after"] = round(os.getloadavg()[0], 2)
    return record


def _record(run, total, peak_bytes, child_kb, demo_seconds, jobs) -> dict:
    runs = [r for s in run.segments for r in s.notebooks if r.status != "skipped"]
    busy = sum(r.seconds for r in runs)
    startup = sum(r.startup_seconds or 0.0 for r in runs)
    render = sum(r.render_seconds or 0.0 for r in runs)
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "quarter": run.quarter,
        "jobs": jobs or os.cpu_count(),
        "segments": {s.name: s.status for s in run.segments},
        "demo_data_seconds": round(demo_seconds, 2),
        "total_seconds": round(total, 2),
        "notebook_seconds": round(busy, 2),
        "startup_seconds": round(startup, 2),
        "startup_share": round(startup / busy, 3) if busy else None,
        "render_seconds": round(render, 2),
        "render_share": round(render / busy, 3) if busy else None,
        "notebooks": summarize_notebooks(run),
        "peak_rss_all_processes_mb": round(peak_bytes / 2**20, 1),
        "peak_rss_largest_child_mb": round(child_kb / 1024, 1),
        "targets": TARGETS,
    }


# Targets for the demo run on the reference machine (2 cores, 24 GB). They are
# compared and reported here, never asserted in tests.
TARGETS = {
    "total_seconds": 90.0,
    "startup_share": 0.40,
    "peak_rss_all_processes_mb": 2048.0,
}


def check_targets(record: dict) -> list[str]:
    """Return one line per target: the measured value, the target, met or not."""
    lines = []
    for key, target in TARGETS.items():
        value = record.get(key)
        verdict = "met" if value is not None and value <= target else "MISSED"
        lines.append(f"{key}: {value} (target <= {target}) {verdict}")
    return lines


def summary_line(record: dict) -> str:
    """Return the one-line summary printed after a run."""
    share = record["startup_share"]
    share_text = "n/a" if share is None else f"{share:.0%}"
    return (
        f"{record['created_at']} total {record['total_seconds']:.1f} s on "
        f"{record['jobs']} jobs; kernel start + setup {share_text} of notebook "
        f"time; peak memory {record['peak_rss_all_processes_mb']:.0f} MB "
        f"(largest process {record['peak_rss_largest_child_mb']:.0f} MB); "
        f"load average {record['machine']['load_average_before']:.1f} before"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "params" / "demo.yaml"))
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--results", default=str(BENCH / "results"))
    parser.add_argument(
        "--fresh-kernels",
        action="store_true",
        help="a new kernel per notebook, to compare with one kernel per segment",
    )
    args = parser.parse_args(argv)

    record = measure(
        Path(args.config), jobs=args.jobs, fresh_kernels=args.fresh_kernels
    )
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    stamp = record["created_at"].replace(":", "").replace("+0000", "Z")
    path = results / f"{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(summary_line(record))
    for line in check_targets(record):
        print("  " + line)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
