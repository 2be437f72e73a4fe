#!/usr/bin/env python3
"""Non-causal prefill timings of PyTorch's SDPA backends, for the sweep points
that ../shared/bench/torch_ref.py (causal only) does not cover. It reuses
torch_ref.py's timing (bench_ms: CUDA events around each call, median) and
field names; TFLOP/s counts 4 * B * H * S^2 * D (no causal halving).

  python3 bench/torch_prefill_noncausal.py TORCH_REF --batch 2 --seq 8192 --heads 16 --head-dim 128
"""
import argparse, importlib.util, json, warnings
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

p = argparse.ArgumentParser()
p.add_argument("torch_ref")
p.add_argument("--batch", type=int, default=1)
p.add_argument("--seq", type=int, required=True)
p.add_argument("--heads", type=int, required=True)
p.add_argument("--kv-heads", type=int, default=None)
p.add_argument("--head-dim", type=int, required=True)
p.add_argument("--dtype", default="bf16")
p.add_argument("--iters", type=int, default=30)
p.add_argument("--warmup", type=int, default=5)
a = p.parse_args()
spec = importlib.util.spec_from_file_location("torch_ref", a.torch_ref)
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
warnings.filterwarnings("ignore")
torch.manual_seed(0)
B, S, H, D = a.batch, a.seq, a.heads, a.head_dim
Hk = a.kv_heads or H
dt = ref.DTYPES[a.dtype]
q = torch.randn(B, H, S, D, device="cuda", dtype=dt)
k = torch.randn(B, Hk, S, D, device="cuda", dtype=dt)
v = torch.randn_like(k)
for name in ("flash", "cudnn"):
    row = {"mode": "prefill", "impl": "torch-" + name, "dtype": a.dtype, "batch": B, "heads": H,
           "kv_heads": Hk, "head_dim": D, "seq": S, "causal": False}
    try:
        with sdpa_kernel(ref.BACKENDS[name]):
            ms = ref.bench_ms(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=Hk != H),
                              a.iters, a.warmup)
        row["us"] = round(ms * 1e3, 2)
        row["TFLOPs"] = round(4 * B * H * S * S * D / ms / 1e9, 1)
    except Exception as ex:
        row["error"] = str(ex).splitlines()[0][:100]
    print(json.dumps(row), flush=True)
