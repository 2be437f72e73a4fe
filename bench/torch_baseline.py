#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The PyTorch baseline of Forge's benchmarks, one JSON object a line.

It times what `forge bench layer|prefill|decode` time, with the field names
they print, so that bench/table.py sets the two side by side. Run it in the
same command as Forge's benchmark on the same GPU: both figures then share
the clocks and the power draw. Its requirements are pinned in
bench/requirements.txt.

  bench/torch_baseline.py layer   --seq 32 --heads 4 --head-dim 32 --dtype fp32
  bench/torch_baseline.py prefill --batch 2 --seq 8192 --heads 16 --head-dim 128
  bench/torch_baseline.py decode  --batch 16 --kv-len 32768 --heads 32 --kv-heads 8 --head-dim 128

layer    one prompt of S tokens through the attention layer: QKV projection
         with bias, Llama's half-rotation RoPE, causal attention (written out
         as matrix products and softmax, "torch-unfused", and through
         scaled_dot_product_attention, "torch-sdpa"), output projection with
         bias; eager_us and graph_us (a CUDA graph's replay).
prefill  causal attention alone through each SDPA backend (flash, cuDNN,
         memory-efficient, math): us and TFLOP/s, counting 4*B*H*S*S*D / 2.
         With --window W or --softcap C (Gemma 2's cap * tanh(s / cap)):
         FlexAttention (torch.compile'd; a block mask that skips the tiles
         outside the window, the cap as a score_mod), and with a window
         alone also the memory-efficient backend under a boolean mask; TFLOP/s
         of the (query, key) pairs a query sees, as forge bench prefill
         counts them.
decode   one query a sequence over L cached tokens through each backend: us
         and TB/s of K and V read, 2*B*Hkv*L*D*element size.
Times are medians of CUDA-event pairs around each call.
"""
import argparse
import json
import math
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SDPA = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
        ("efficient", SDPBackend.EFFICIENT_ATTENTION), ("math", SDPBackend.MATH)]


def median_us(call, iters, warmup):
    """The median device time of call() in microseconds, by CUDA events."""
    for _ in range(warmup):
        call()
    torch.cuda.synchronize()
    samples = []
    for _ in range(iters):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        call()
        end.record()
        end.synchronize()
        samples.append(begin.elapsed_time(end) * 1e3)
    samples.sort()
    return samples[len(samples) // 2]


def graph_us(call, iters, warmup):
    """The same for call() captured once as a CUDA graph and replayed."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # allocations settle before the capture
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    return median_us(graph.replay, iters, warmup)


def rotate(x, cos, sin):
    """Llama's RoPE on x [heads, seq, dim]: pairs (i, i + dim/2)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


def layer(args, dtype):
    seq, heads, kv_heads, dim = args.seq, args.heads, args.kv_heads, args.head_dim
    hidden = args.hidden or heads * dim
    qkv_rows = (heads + 2 * kv_heads) * dim
    x = torch.randn(seq, hidden, device="cuda", dtype=dtype)
    w_qkv = torch.randn(hidden, qkv_rows, device="cuda", dtype=dtype) / math.sqrt(hidden)
    b_qkv = 0.1 * torch.randn(qkv_rows, device="cuda", dtype=dtype)
    w_o = torch.randn(heads * dim, hidden, device="cuda", dtype=dtype) / math.sqrt(heads * dim)
    b_o = 0.1 * torch.randn(hidden, device="cuda", dtype=dtype)
    positions = torch.arange(seq, device="cuda")
    future = torch.ones(seq, seq, device="cuda", dtype=torch.bool).triu(1)

    def forward(unfused):
        # the angles are part of the call, as Forge computes them in its
        freq = args.rope_theta ** (-torch.arange(0, dim, 2, device="cuda", dtype=torch.float32) / dim)
        angle = positions[:, None].float() * freq[None, :]
        cos = torch.cat([angle.cos()] * 2, -1).to(dtype)
        sin = torch.cat([angle.sin()] * 2, -1).to(dtype)
        qkv = x @ w_qkv + b_qkv
        q, k, v = qkv.split([heads * dim, kv_heads * dim, kv_heads * dim], -1)
        q = rotate(q.view(seq, heads, dim).transpose(0, 1), cos, sin)
        k = rotate(k.view(seq, kv_heads, dim).transpose(0, 1), cos, sin)
        v = v.view(seq, kv_heads, dim).transpose(0, 1)
        if unfused:
            group = heads // kv_heads
            k, v = k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)
            p = torch.softmax((q @ k.transpose(-1, -2) / math.sqrt(dim)).masked_fill(future, float("-inf")), -1)
            out = p @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=kv_heads != heads)
        return out.transpose(0, 1).reshape(seq, heads * dim) @ w_o + b_o

    for impl, unfused in (("torch-unfused", True), ("torch-sdpa", False)):
        call = lambda: forward(unfused)
        print(json.dumps({"mode": "layer", "impl": impl, "dtype": args.dtype, "seq": seq, "heads": heads,
                          "kv_heads": kv_heads, "head_dim": dim, "hidden": hidden,
                          "eager_us": round(median_us(call, args.iters, args.warmup), 2),
                          "graph_us": round(graph_us(call, args.iters, args.warmup), 2)}), flush=True)


def attention(args, dtype, decode):
    batch, heads, kv_heads, dim = args.batch, args.heads, args.kv_heads, args.head_dim
    keys = args.kv_len if decode else args.seq
    q = torch.randn(batch, heads, 1 if decode else keys, dim, device="cuda", dtype=dtype)
    k = torch.randn(batch, kv_heads, keys, dim, device="cuda", dtype=dtype)
    v = torch.randn(batch, kv_heads, keys, dim, device="cuda", dtype=dtype)
    for name, backend in SDPA:
        row = {"mode": "decode" if decode else "prefill", "impl": "torch-" + name, "dtype": args.dtype,
               "batch": batch, "heads": heads, "kv_heads": kv_heads, "head_dim": dim,
               ("kv_len" if decode else "seq"): keys}
        if name == "math" and not decode and keys > 8192:
            continue  # its S x S scores do not fit
        try:
            with sdpa_kernel(backend):
                us = median_us(lambda: F.scaled_dot_product_attention(
                    q, k, v, is_causal=not decode, enable_gqa=kv_heads != heads), args.iters, args.warmup)
        except RuntimeError as refusal:  # the backend does not take this shape
            row["error"] = str(refusal).splitlines()[0][:100]
            print(json.dumps(row), flush=True)
            continue
        row["us"] = round(us, 2)
        if decode:
            row["TBps"] = round(2 * batch * kv_heads * keys * dim * q.element_size() / us / 1e6, 3)
        else:
            row["TFLOPs"] = round(2 * batch * heads * keys * keys * dim / us / 1e6, 1)
        print(json.dumps(row), flush=True)


def visible_pairs(seq, window):
    """(query, key) pairs of a causal sequence that a window (0: none) leaves."""
    if not window or window >= seq:
        return seq * seq / 2
    return window * (window + 1) / 2 + (seq - window) * window


def score_options(args, dtype):
    """Causal prefill with a sliding window and/or soft-capping."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    batch, heads, kv_heads, dim, seq = args.batch, args.heads, args.kv_heads, args.head_dim, args.seq
    window, cap = args.window, args.softcap
    q = torch.randn(batch, heads, seq, dim, device="cuda", dtype=dtype)
    k = torch.randn(batch, kv_heads, seq, dim, device="cuda", dtype=dtype)
    v = torch.randn(batch, kv_heads, seq, dim, device="cuda", dtype=dtype)

    def seen(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & ((q_idx - kv_idx < window) if window else True)

    def capped(score, b, h, q_idx, kv_idx):
        return cap * torch.tanh(score / cap)

    flops = 4 * batch * heads * visible_pairs(seq, window) * dim
    base = {"mode": "prefill", "dtype": args.dtype, "batch": batch, "heads": heads, "kv_heads": kv_heads,
            "head_dim": dim, "seq": seq, "causal": True, "window": window, "softcap": cap}
    block_mask = create_block_mask(seen, None, None, seq, seq)
    flex = torch.compile(flex_attention)
    us = median_us(lambda: flex(q, k, v, score_mod=capped if cap else None, block_mask=block_mask,
                                enable_gqa=kv_heads != heads), args.iters, args.warmup)
    print(json.dumps({**base, "impl": "torch-flex", "us": round(us, 2), "TFLOPs": round(flops / us / 1e6, 1)}),
          flush=True)
    if cap or seq > 16384:
        return  # SDPA has no soft cap; its mask is S x S
    pos = torch.arange(seq, device="cuda")
    mask = (pos[:, None] >= pos[None, :]) & (pos[:, None] - pos[None, :] < window)
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        us = median_us(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=kv_heads != heads),
                       args.iters, args.warmup)
    print(json.dumps({**base, "impl": "torch-efficient-mask", "us": round(us, 2),
                      "TFLOPs": round(flops / us / 1e6, 1)}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["layer", "prefill", "decode"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--kv-len", type=int, default=4096)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--hidden", type=int)
    parser.add_argument("--rope-theta", type=float, default=10000.0)
    parser.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    parser.add_argument("--window", type=int, default=0)
    parser.add_argument("--softcap", type=float, default=0.0)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    args.kv_heads = args.kv_heads or args.heads
    warnings.filterwarnings("ignore")  # SDPA warns at length about each backend it refuses
    torch.manual_seed(0)
    dtype = DTYPES[args.dtype]
    if args.mode == "layer":
        layer(args, dtype)
    elif args.mode == "prefill" and (args.window or args.softcap):
        score_options(args, dtype)
    else:
        attention(args, dtype, args.mode == "decode")


if __name__ == "__main__":
    main()
