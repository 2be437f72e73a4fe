#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 5's prefill sweep, Forge beside PyTorch in one process on the GPU
machine (scripts/prefill-sweep.sh calls it): S = 512 .. 16k with B*S = 16k
tokens, head dims 64 and 128 with H*D = 2048, causal and not, and GQA 32/8
at head dim 128 (causal).

Each point is timed in ROUNDS rounds, and in each round every side in turn,
so that Forge and PyTorch share the clocks and the power draw of the same
seconds: `forge bench prefill --json` as dispatched and with the portable
kernel (a subprocess each), then PyTorch's flash and cuDNN SDPA backends
with the baseline's own timing (bench/torch_baseline.py's median_us and SDPA, imported; the
call is bench/torch_baseline.py's, with is_causal set from the point, as bench/torch_baseline.py
itself times causal shapes only). TFLOP/s counts 4*B*H*S^2*D, halved when
causal, as bench/torch_baseline.py does. One JSON line per measurement, with "round";
bench/plot_prefill.py takes the median over the rounds.

  python3 bench/prefill_sweep.py TORCH_REF FORGE [--rounds N] [--quick] > prefill.jsonl
"""
import sys

import torch
import torch.nn.functional as F

from sweep_common import emit, forge_row, parse, torch_row

a, ref = parse(__doc__, 20, 3, lambda p: p.add_argument("--quick", action="store_true", help="S = 2k and 8k only"))
seqs = [2048, 8192] if a.quick else [512, 1024, 2048, 4096, 8192, 16384]
points = []  # (heads, kv_heads, head_dim, causal)
for d in (64, 128):
    points += [(2048 // d, 2048 // d, d, causal) for causal in (True, False)]
points.append((32, 8, 128, True))


status = 0
for h, hk, d, causal in points:
    for s in seqs:
        b = 16384 // s
        q = torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(b, hk, s, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        flops = 4 * b * h * s * s * d / (2 if causal else 1)
        for r in range(a.rounds):
            for kernel in ("auto", "portable"):
                cmd = [a.forge, "bench", "prefill", "--json", "--dtype", "bf16", "--batch", str(b), "--seq", str(s),
                       "--heads", str(h), "--kv-heads", str(hk), "--head-dim", str(d), "--kernel", kernel,
                       "--iters", str(a.iters), "--warmup", str(a.warmup)] + ([] if causal else ["--no-causal"])
                row = forge_row(cmd, r)
                status |= row is None
                if row:
                    emit(row)
            for name in ("flash", "cudnn"):
                row = {"mode": "prefill", "impl": "torch-" + name, "dtype": "bf16", "batch": b, "heads": h,
                       "kv_heads": hk, "head_dim": d, "seq": s, "causal": causal, "round": r}
                emit(torch_row(ref, row, name,
                               lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=hk != h),
                               a.iters, a.warmup, ("TFLOPs", lambda ms: round(flops / ms / 1e9, 1))))
        del q, k, v
sys.exit(status)
