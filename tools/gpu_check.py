"""One prepared check of every package's CUDA path: run it on a GPU machine with no network.

    uv run --all-packages python tools/gpu_check.py                      # full size, best device (< 8 min, one GPU)
    uv run --all-packages python tools/gpu_check.py --tiny --device cpu  # the CPU smoke version CI runs (< 2 min)

Each package keeps its part in ``packages/<name>/benchmarks/gpu_check.py``: a function ``run(device, tiny) -> dict``
that runs the package's device path on random or procedural inputs with random weights (nothing is downloaded),
compares the device's results with the CPU path where they must agree (``"agrees"`` (or ``"passed"``/``"pass"``):
a bool, plus the differences),
and reports throughputs and ``peak_memory_mib``. This script runs the five in turn, each in its own try, and writes
one JSON file with the machine, every package's figures, its wall time and its verdict. It exits 1 when a check
failed or raised, 0 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dgm-eval", "direct-cms", "fusemix", "bnpo", "eb-ensembles")


def load_check(package: str):
    """The ``run`` function of ``packages/<package>/benchmarks/gpu_check.py`` (None when the file is missing)."""
    path = ROOT / "packages" / package / "benchmarks" / "gpu_check.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"gpu_check_{package.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run


VERDICT_KEYS = ("agrees", "passed", "pass")


def verdict(result: dict) -> str:
    """``ok`` when the package's own verdict (``agrees``, ``passed`` or ``pass``) is true; a result without one is
    ``no verdict``, so a check that forgot to compare anything cannot pass."""
    found = [result[key] for key in VERDICT_KEYS if key in result]
    if not found:
        return "no verdict"
    return "ok" if all(value is True for value in found) else "disagrees"


def machine(device: str) -> dict:
    import torch

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": device,
        "threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
        info["bf16"] = torch.cuda.is_bf16_supported()
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when present, else cpu)")
    parser.add_argument("--tiny", action="store_true", help="tiny models and inputs (the CPU smoke version)")
    parser.add_argument("--out", default="gpu_check.json", help="JSON file to write (default: gpu_check.json)")
    parser.add_argument("--only", default="", help="comma-separated subset of packages")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and BLAS")
    args = parser.parse_args(argv)
    chosen = [p for p in PACKAGES if not args.only or p in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - set(PACKAGES)
    if unknown:
        known = ", ".join(PACKAGES)
        print(f"error: --only names unknown packages {sorted(unknown)}; choose from {known}", file=sys.stderr)
        return 2

    import torch

    from sixlab_shared import UserError, get_device, set_threads

    if args.threads is not None and args.threads < 1:
        print(f"error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
        return 2
    if Path(args.out).is_dir():
        print(f"error: --out {args.out!r} is a folder; give the path of the JSON file to write", file=sys.stderr)
        return 2
    if args.threads is not None:
        set_threads(args.threads)
    try:
        device = str(get_device(args.device))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    report = {"machine": machine(device), "tiny": args.tiny, "packages": {}}
    failed = False
    for package in chosen:
        start = time.perf_counter()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        try:
            run = load_check(package)
            if run is None:
                result = {"status": "missing", "error": f"packages/{package}/benchmarks/gpu_check.py not found"}
            else:
                result = dict(run(device, args.tiny))
                result["status"] = verdict(result)
        except Exception as err:  # one package's failure must not hide the others' figures
            result = {"status": "error", "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        finally:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
        result["wall_s"] = round(time.perf_counter() - start, 2)
        failed |= result["status"] != "ok"
        report["packages"][package] = result
        print(f"{package:<14} {result['status']:<10} {result['wall_s']:7.1f} s", flush=True)
        if result["status"] == "error":
            print(result["traceback"], file=sys.stderr)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
