#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Prints JSON lines from forge bench and torch_ref.py as one markdown table.

  python3 bench/table.py results.jsonl
"""
import json
import sys

KEYS = ("mode", "impl", "dtype", "batch", "seq", "heads", "kv_heads", "head_dim", "hidden")
TIMES = ("eager_us", "eager_us_p10", "eager_us_p90", "graph_us", "eager_wall_us", "graph_wall_us",
         "qkv_us", "rope_cache_us",
         "attention_us", "output_us")

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip().startswith("{")]
cols = list(KEYS) + [t for t in TIMES if any(t in r for r in rows)]
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for r in rows:
    print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
