"""How much the program's own work adds to evaluating it (run by hand, not a test).

    venv/bin/python bench/bench_preview.py [--repeat 5]

For 1 and 20 images, times in fresh interpreters (imports included):
the real __main__.py under Pulumi mocks, and a baseline that registers the same
resources and invokes with precomputed inputs. Reports medians and the overhead
of the program's validation, rendering, fingerprinting and imports, with the
kickstart checks remembered from an earlier evaluation (the usual preview) and
with an empty cache (the first preview after a kickstart edit). Target: at most
25 % for 20 images.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKLOADS = Path(__file__).with_name("preview_workloads.py")
TARGET = 0.25


def timed(*args: str, cache_dir: str) -> float:
    env = {**os.environ, "HOMELAB_IMAGES_CACHE_DIR": cache_dir}
    done = subprocess.run([sys.executable, str(WORKLOADS), *args], capture_output=True, text=True, check=True, env=env)
    return float(done.stdout.strip().splitlines()[-1])


def cold(*args: str) -> float:
    """A run with an empty kickstart-check cache (the first preview after an edit)."""
    with tempfile.TemporaryDirectory() as cache_dir:
        return timed(*args, cache_dir=cache_dir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    worst = 0.0
    print(f"{'images':>6}  {'program s':>9}  {'baseline s':>10}  {'overhead':>8}  {'cold s':>7}  {'overhead':>8}")
    for images in (1, 20):
        with tempfile.TemporaryDirectory() as directory:
            warm_cache = str(Path(directory) / "cache")
            recorded = Path(directory) / "inputs.json"
            # Recording evaluates the program once, which also fills the warm cache.
            record = [sys.executable, str(WORKLOADS), "record", f"{images}:{recorded}"]
            subprocess.run(
                record, check=True, capture_output=True, env={**os.environ, "HOMELAB_IMAGES_CACHE_DIR": warm_cache}
            )
            program = statistics.median(timed("program", str(images), cache_dir=warm_cache) for _ in range(repeat))
            first = statistics.median(cold("program", str(images)) for _ in range(repeat))
            baseline = statistics.median(timed("baseline", str(recorded), cache_dir=warm_cache) for _ in range(repeat))
        overhead = program / baseline - 1
        if images == 20:
            worst = overhead
        cold_overhead = first / baseline - 1
        print(
            f"{images:>6}  {program:>9.3f}  {baseline:>10.3f}  {overhead:>7.1%}  {first:>7.3f}  {cold_overhead:>7.1%}"
        )
    verdict = "meets" if worst <= TARGET else "misses"
    print(f"20 images: {verdict} the {TARGET:.0%} target")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
