#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""transformers on the CPU, for `forge bench model --backend cpu` to stand
beside: a model of SmolLM2-135M's shape with random weights (fp32), written
to DIR by save_pretrained when DIR has none, then timed as
../shared/bench/torch_model_ref.py times the GPU: one forward over batch x
prompt tokens (mode "prefill") and greedy generation of `new` tokens (mode
"decode"), in its fields. One JSON object a line.

  python3 bench/torch_model_cpu.py DIR [--batch 1] [--prompt 128] [--new 32]
"""
import argparse
import json
import os
import time

import torch
import transformers as tf

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("dir")
p.add_argument("--batch", type=int, default=1)
p.add_argument("--prompt", type=int, default=128)
p.add_argument("--new", type=int, default=32)
a = p.parse_args()
if not os.path.isfile(os.path.join(a.dir, "config.json")):
    cfg = tf.LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                         tie_word_embeddings=True, rope_theta=100000.0)
    torch.manual_seed(0)
    tf.LlamaForCausalLM(cfg).save_pretrained(a.dir, safe_serialization=True)
model = tf.AutoModelForCausalLM.from_pretrained(a.dir, dtype=torch.float32).eval()
c = model.config
shape = {"dtype": "fp32", "layers": c.num_hidden_layers, "hidden": c.hidden_size, "intermediate": c.intermediate_size,
         "heads": c.num_attention_heads, "kv_heads": c.num_key_value_heads, "vocab": c.vocab_size, "batch": a.batch,
         "threads": torch.get_num_threads()}
ids = torch.randint(0, c.vocab_size, (a.batch, a.prompt))
with torch.no_grad():
    model(ids)
    t = time.perf_counter()
    model(ids)
    s = time.perf_counter() - t
    print(json.dumps({"mode": "prefill", "impl": "torch-cpu", **shape, "prompt": a.prompt, "ms": round(s * 1e3, 2),
                      "tok_per_s": round(a.batch * a.prompt / s, 1)}), flush=True)
    gen = lambda: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.new,
                                 min_new_tokens=a.new, do_sample=False, pad_token_id=0)
    gen()
    t = time.perf_counter()
    gen()
    s = time.perf_counter() - t
    print(json.dumps({"mode": "decode", "impl": "torch-cpu", **shape, "prompt": a.prompt, "new": a.new,
                      "tok_per_s": round(a.batch * a.new / s, 1), "ms_per_token": round(s * 1e3 / a.new, 3)}),
          flush=True)
