"""How long ``icmbridge`` takes to answer before it does any work, next to ``import torch``.

Each repetition starts fresh interpreters, as a shell does: ``icmbridge --help``, an argument
error (``icmbridge compress`` without its IMAGE) and ``python -c "import torch"``, in an order
that rotates from one repetition to the next so that machine noise hits all of them alike.
Medians are compared: the goal is ``--help`` in less than half of ``import torch``.
``icmbridge`` runs as ``python -m icmbridge.cli`` (what the console script runs) with this
checkout's ``src`` (or ``--src``) first on the path.

    python benchmarks/startup.py [--reps 9] [--out results/benchmarks/startup.json] \
        [--src OTHER/src]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "icmbridge --help": ["-m", "icmbridge.cli", "--help"],
    "icmbridge compress (argument error)": ["-m", "icmbridge.cli", "compress"],
    "import torch": ["-c", "import torch"],
}


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], env=env, capture_output=True, check=False)
    return time.perf_counter() - start


def measure(reps: int, src: Path) -> dict[str, list[float]]:
    paths = [str(src), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    names = list(CASES)
    for name in names:  # warm the file cache once, unmeasured
        _time(CASES[name], env)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(_time(CASES[name], env))
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--reps", type=int, default=9, help="repetitions of every case")
    out = ROOT / "results" / "benchmarks" / "startup.json"
    p.add_argument("--out", default=str(out), help="JSON to write")
    p.add_argument(
        "--src", type=Path, default=ROOT / "src", help="the icmbridge to time (another checkout's)"
    )
    args = p.parse_args()
    times = measure(args.reps, args.src)
    medians = {n: statistics.median(t) for n, t in times.items()}
    ratio = medians["icmbridge --help"] / medians["import torch"]
    result = {
        "what": "seconds to answer, fresh interpreter each time (medians of interleaved runs)",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "reps": args.reps,
        "src": os.path.relpath(args.src, ROOT),
        "median_s": {n: round(m, 3) for n, m in medians.items()},
        "all_s": {n: [round(x, 3) for x in t] for n, t in times.items()},
        "help_over_import_torch": round(ratio, 3),
        "goal": "help_over_import_torch < 0.5",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, m in medians.items():
        print(f"{name:<38} {m:6.3f} s")
    print(f"--help / import torch: {ratio:.2f} (goal: below 0.5)")


if __name__ == "__main__":
    main()
