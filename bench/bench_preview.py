"""How much the program's own work adds to evaluating it (run by ``make bench``).

    venv/bin/python bench/bench_preview.py [--repeat 3]

For 1 and 20 images, times in fresh interpreters (imports included, nothing
remembered between runs; the program keeps no cache on disk): the real
__main__.py under Pulumi mocks, and a baseline that registers the same graph
with inputs precomputed beforehand, so it validates, renders and fingerprints
nothing. Reports medians and their ratio. Target: 20 images in at most 3x the
baseline. The program's work is mostly fixed start-up (pykickstart and the config
model) plus a few milliseconds per image.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKLOADS = Path(__file__).with_name("preview_workloads.py")
TARGET_RATIO = 3.0


def timed(*args: str) -> float:
    done = subprocess.run([sys.executable, str(WORKLOADS), *args], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def measure(images: int, repeat: int) -> tuple[float, float]:
    """(program, baseline) median seconds for a stack of ``images`` images."""
    with tempfile.TemporaryDirectory() as directory:
        recorded = Path(directory) / "inputs.json"
        subprocess.run(
            [sys.executable, str(WORKLOADS), "record", f"{images}:{recorded}"], check=True, capture_output=True
        )
        program = statistics.median(timed("program", str(images)) for _ in range(repeat))
        baseline = statistics.median(timed("baseline", str(recorded)) for _ in range(repeat))
    return program, baseline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", type=int, nargs="+", default=[1, 20])
    args = parser.parse_args(argv)
    ratios = {}
    print(f"{'images':>6}  {'program s':>9}  {'baseline s':>10}  {'ratio':>5}")
    for images in args.images:
        program, baseline = measure(images, args.repeat)
        ratios[images] = program / baseline
        print(f"{images:>6}  {program:>9.3f}  {baseline:>10.3f}  {ratios[images]:>5.2f}")
    largest = max(ratios)
    verdict = "meets" if ratios[largest] <= TARGET_RATIO else "misses"
    print(f"{largest} images, cold: {ratios[largest]:.2f}x the baseline; {verdict} the {TARGET_RATIO:.0f}x target")
    return 0 if ratios[largest] <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
