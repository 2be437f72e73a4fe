#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 6's decode sweep, Forge beside PyTorch in one process on the GPU
machine (scripts/decode-sweep.sh calls it): GQA 32/8, head dim 128, bf16,
B = 1, 16, 64 sequences of L = 1k, 8k, 32k cached tokens where B*L <= 512k,
one query each.

Each point is timed in ROUNDS rounds, and in each round every side in turn,
as bench/prefill_sweep.py does: `forge bench decode --json` (a subprocess;
paged cache, split count chosen by Forge), then PyTorch's flash and cuDNN
SDPA backends with bench/torch_baseline.py's own timing (its bench_ms and BACKENDS,
imported) on the call bench/torch_baseline.py decode makes (q [B, H, 1, D] over
contiguous k, v [B, K, L, D]).
TB/s counts the K and V bytes read, 2 * B * K * L * D * 2, as bench/torch_baseline.py
does. One JSON line per measurement, with "round".

  python3 bench/decode_sweep.py TORCH_REF FORGE [--rounds N] [--page-size P] > decode.jsonl
"""
import sys

import torch
import torch.nn.functional as F

from sweep_common import emit, forge_row, parse, torch_row

a, ref = parse(__doc__, 50, 5, lambda p: p.add_argument("--page-size", type=int, default=16))
H, HK, D = 32, 8, 128
points = [(b, l) for b in (1, 16, 64) for l in (1024, 8192, 32768) if b * l <= 512 * 1024]

status = 0
for b, l in points:
    q = torch.randn(b, H, 1, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, HK, l, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    nbytes = 2 * b * HK * l * D * k.element_size()
    for r in range(a.rounds):
        cmd = [a.forge, "bench", "decode", "--json", "--dtype", "bf16", "--batch", str(b), "--kv-len", str(l),
               "--heads", str(H), "--kv-heads", str(HK), "--head-dim", str(D), "--page-size", str(a.page_size),
               "--iters", str(a.iters), "--warmup", str(a.warmup)]
        row = forge_row(cmd, r)
        status |= row is None
        if row:
            emit(row)
        for name in ("flash", "cudnn"):  # "efficient" has no GQA decode kernel
            row = {"mode": "decode", "impl": "torch-" + name, "dtype": "bf16", "batch": b, "heads": H,
                   "kv_heads": HK, "head_dim": D, "kv_len": l, "round": r}
            emit(torch_row(ref, row, name, lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                           a.iters, a.warmup, ("TBps", lambda ms: round(nbytes / ms / 1e9, 3))))
    del q, k, v
sys.exit(status)
