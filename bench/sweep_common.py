# SPDX-License-Identifier: Apache-2.0
"""What bench/prefill_sweep.py and bench/decode_sweep.py share: their common
arguments, the baseline's timing and backend table (bench/torch_baseline.py),
and Forge's own JSON line run as a subprocess."""
import argparse, json, subprocess, sys, warnings

import torch

import torch_baseline


def parse(description, iters, warmup, extra=lambda p: None):
    """The sweep's arguments (FORGE --rounds --iters --warmup and the
    sweep's own), and the baseline module, seeded."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("forge")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=iters)
    p.add_argument("--warmup", type=int, default=warmup)
    extra(p)
    a = p.parse_args()
    warnings.filterwarnings("ignore")  # SDPA explains every refused backend at length
    torch.manual_seed(0)
    return a, torch_baseline


def emit(row):
    print(json.dumps(row), flush=True)


def forge_row(cmd, round_):
    """forge's one JSON line with "round" added, or None (the error on stderr)."""
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        print(f"{' '.join(cmd)}: {run.stderr.strip()}", file=sys.stderr)
        return None
    row = json.loads(run.stdout)
    row["round"] = round_
    return row


def torch_row(ref, row, backend, fn, iters, warmup, metric):
    """row with "us" and metric(ms) under its key (("TFLOPs", f) or ("TBps",
    f)) from fn timed by the baseline's median_us on one SDPA backend, or
    "error" where the backend refuses the shape."""
    key, value = metric
    try:
        with ref.sdpa_kernel(dict(ref.SDPA)[backend]):
            ms = ref.median_us(fn, iters, warmup) / 1e3
        row["us"] = round(ms * 1e3, 2)
        row[key] = value(ms)
    except Exception as ex:  # a backend that refuses this shape
        row["error"] = str(ex).splitlines()[0][:100]
    return row
