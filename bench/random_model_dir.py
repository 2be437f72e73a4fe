#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A Llama model directory of random weights, written with the standard
library alone (no torch): config.json, and the weights in safetensors shards
of at most --shard-gb with model.safetensors.index.json, named and laid out
as transformers' save_pretrained writes a LlamaForCausalLM. For timing
`forge bench model --model DIR` (the load from files among it) on a machine
without transformers, at any size: the Llama-3-8B shape is the default.

Each tensor is a block of a million values uniform in +-0.05 (drawn once from
--seed), repeated from an offset of its own; the tokens such a model picks
mean nothing, its time is a real model's.

  python3 bench/random_model_dir.py DIR [--hidden 4096] [--intermediate 14336] [--layers 32]
      [--heads 32] [--kv-heads 8] [--vocab 128256] [--tied] [--dtype bf16|fp32] [--shard-gb 5]
"""
import argparse
import array
import json
import os
import random
import struct
import zlib

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("dir")
p.add_argument("--hidden", type=int, default=4096)
p.add_argument("--intermediate", type=int, default=14336)
p.add_argument("--layers", type=int, default=32)
p.add_argument("--heads", type=int, default=32)
p.add_argument("--kv-heads", type=int, default=8)
p.add_argument("--vocab", type=int, default=128256)
p.add_argument("--rope-theta", type=float, default=500000.0)
p.add_argument("--tied", action="store_true")
p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
p.add_argument("--shard-gb", type=float, default=5.0)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

H, I, D = a.hidden, a.intermediate, a.hidden // a.heads
tensors = [("model.embed_tokens.weight", (a.vocab, H))]
for i in range(a.layers):
    b = f"model.layers.{i}."
    tensors += [(b + "input_layernorm.weight", (H,)),
                (b + "self_attn.q_proj.weight", (a.heads * D, H)),
                (b + "self_attn.k_proj.weight", (a.kv_heads * D, H)),
                (b + "self_attn.v_proj.weight", (a.kv_heads * D, H)),
                (b + "self_attn.o_proj.weight", (H, a.heads * D)),
                (b + "post_attention_layernorm.weight", (H,)),
                (b + "mlp.gate_proj.weight", (I, H)),
                (b + "mlp.up_proj.weight", (I, H)),
                (b + "mlp.down_proj.weight", (H, I))]
tensors.append(("model.norm.weight", (H,)))
if not a.tied:
    tensors.append(("lm_head.weight", (a.vocab, H)))

esize = 2 if a.dtype == "bf16" else 4
rng = random.Random(a.seed)
values = array.array("f", (rng.uniform(-0.05, 0.05) for _ in range(1 << 20)))
raw = values.tobytes()
if a.dtype == "bf16":  # the upper half of each little-endian float32
    raw = b"".join(raw[i + 2:i + 4] for i in range(0, len(raw), 4))
block = raw * 2  # any offset has a whole block after it
ones = struct.pack("<f", 1.0)[4 - esize:] * H  # norms' weights are ones, as a new model's

shards, size, limit = [[]], 0, int(a.shard_gb * 1e9)
for name, shape in tensors:
    n = esize
    for d in shape:
        n *= d
    if shards[-1] and size + n > limit:
        shards.append([])
        size = 0
    shards[-1].append((name, shape, n))
    size += n

os.makedirs(a.dir, exist_ok=True)
weight_map, total = {}, 0
for s, shard in enumerate(shards):
    fname = "model.safetensors" if len(shards) == 1 else f"model-{s + 1:05d}-of-{len(shards):05d}.safetensors"
    header, off = {}, 0
    for name, shape, n in shard:
        header[name] = {"dtype": "BF16" if a.dtype == "bf16" else "F32", "shape": list(shape),
                        "data_offsets": [off, off + n]}
        off += n
        weight_map[name] = fname
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(a.dir, fname), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name, shape, n in shard:
            if len(shape) == 1:
                f.write(ones)
                continue
            start = (zlib.crc32(name.encode()) & 0xFFFFF) * esize
            while n > 0:
                chunk = min(n, len(raw))
                f.write(block[start:start + chunk])
                n -= chunk
    total += off
if len(shards) > 1:
    with open(os.path.join(a.dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
          "intermediate_size": I, "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
          "num_key_value_heads": a.kv_heads, "head_dim": D, "vocab_size": a.vocab, "max_position_embeddings": 8192,
          "rms_norm_eps": 1e-5, "rope_theta": a.rope_theta, "hidden_act": "silu", "tie_word_embeddings": a.tied,
          "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16" if a.dtype == "bf16" else "float32",
          "bos_token_id": 1, "eos_token_id": 2}
with open(os.path.join(a.dir, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
print(f"{a.dir}: {len(tensors)} tensors, {total / 1e9:.2f} GB in {len(shards)} file(s)")
