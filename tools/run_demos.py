"""Run every package's `demo` and print one summary table.

    uv run --all-packages python tools/run_demos.py [--fast] [--threads 1] [--out runs/demos] [--only bnpo,fusemix]

--threads N is passed to every demo (torch and BLAS threads); on a busy 2-core machine one thread is several times
faster than the libraries' default (README: "The two commands").

A package whose CLI has no `demo` verb yet is listed as "not built", not faked. Exits non-zero if a built demo
fails. Each demo writes its own run directory under OUT/<timestamp>/<package>.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("dgm-eval", "direct-cms", "fusemix", "bnpo", "eb-ensembles")


def has_demo(cli: str) -> bool:
    out = subprocess.run([cli, "demo", "--help"], capture_output=True, text=True)
    return out.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="pass --fast to every demo (seconds instead of minutes)")
    parser.add_argument("--out", default="runs/demos", help="parent folder of the demos' run directories")
    parser.add_argument("--only", default="", help="comma-separated subset of packages")
    parser.add_argument("--threads", type=int, default=None, help="pass --threads N to every demo (N >= 1)")
    args = parser.parse_args()
    if args.threads is not None and args.threads < 1:
        print(f"error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
        return 2

    chosen = [p for p in PACKAGES if not args.only or p in args.only.split(",")]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(args.out) / stamp
    rows = []
    for name in chosen:
        cli = shutil.which(name)
        if cli is None:
            rows.append((name, "not installed", "-", "-"))
            continue
        if not has_demo(cli):
            rows.append((name, "not built", "-", "-"))
            continue
        out_dir = root / name
        cmd = [cli, "demo", "--out", str(out_dir), *(["--fast"] if args.fast else [])]
        if args.threads is not None:
            cmd += ["--threads", str(args.threads)]
        print(f"\n=== {' '.join(cmd)}", flush=True)
        start = time.perf_counter()
        result = subprocess.run(cmd)
        seconds = time.perf_counter() - start
        status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        rows.append((name, status, f"{seconds:.0f} s", str(out_dir)))

    print("\nsummary")
    widths = [max(len(str(r[i])) for r in [("package", "status", "time", "run directory"), *rows]) for i in range(4)]
    for row in [("package", "status", "time", "run directory"), *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 1 if any(r[1].startswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
