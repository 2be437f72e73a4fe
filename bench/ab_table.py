#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The medians of an A/B run (scripts/ab-prefill.sh, ab-decode.sh, ab-layer.sh) as
a markdown table: one row per point (the KEY fields), the baseline's and
the tree's median METRIC over the rounds, and the change.

  python3 bench/ab_table.py AB.jsonl METRIC KEY...
"""
import json
import statistics
import sys

path, metric, keys = sys.argv[1], sys.argv[2], sys.argv[3:]
cells = {}
for line in open(path):
    if line.startswith("{"):
        r = json.loads(line)
        cells.setdefault(tuple(r[k] for k in keys), {}).setdefault(r["build"], []).append(r[metric])
print("| " + " | ".join(keys) + f" | baseline {metric} | tree {metric} | change |")
print("|" + "---|" * (len(keys) + 3))
for key, v in cells.items():
    a, t = statistics.median(v.get("baseline", [0])), statistics.median(v.get("tree", [0]))
    change = f"{100 * (t / a - 1):+.1f}%" if a else "-"
    print("| " + " | ".join(str(k) for k in key) + f" | {a:.3f} | {t:.3f} | {change} |")
