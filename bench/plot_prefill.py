#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Draws the prefill sweep (scripts/prefill-sweep.sh) as an SVG: one panel per
configuration, TFLOP/s against sequence length for Forge (as dispatched, and
its portable mma.sync kernel) and PyTorch's flash and cuDNN backends; prints
the same figures as a markdown table, and where each Forge kernel stands
against the PyTorch backend that issue 5 sets it. A point measured in
several rounds (bench/prefill_sweep.py) counts with the median of its
rounds. No dependencies beyond the standard library.

  python3 bench/plot_prefill.py prefill.jsonl prefill.svg
"""
import json
import math
import statistics
import sys

IMPLS = [("forge-cuda", "Forge", "#d62728"), ("forge-cuda-portable", "Forge mma.sync", "#ff9896"),
         ("torch-flash", "PyTorch flash", "#1f77b4"), ("torch-cudnn", "PyTorch cuDNN", "#2ca02c")]

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
rows = [r for r in rows if "TFLOPs" in r]
for r in rows:
    r.setdefault("causal", True)
runs = {}  # (panel, impl, seq) -> [TFLOP/s of each round]
for r in rows:
    key = (r["head_dim"], r["heads"], r["kv_heads"], r["causal"])
    runs.setdefault((key, r["impl"], r["seq"]), []).append(r["TFLOPs"])
panels = {}
for (key, impl, seq), v in runs.items():
    panels.setdefault(key, {}).setdefault(impl, {})[seq] = round(statistics.median(v), 1)

# markdown table
for key, series in panels.items():
    d, h, k, causal = key
    seqs = sorted({s for v in series.values() for s in v})
    print(f"\nhead dim {d}, heads {h}/{k}, {'causal' if causal else 'non-causal'} (TFLOP/s, bf16)\n")
    print("| impl | " + " | ".join(str(s) for s in seqs) + " |")
    print("|---|" + "---|" * len(seqs))
    for impl, _, _ in IMPLS:
        if impl in series:
            print(f"| {impl} | " + " | ".join(str(series[impl].get(s, "")) for s in seqs) + " |")

# issue 5's targets: the Hopper kernel at least cuDNN, the portable kernel at
# least PyTorch flash, at every point (medians), and how many rounds each led
print()
for ours, theirs in (("forge-cuda", "torch-cudnn"), ("forge-cuda-portable", "torch-flash")):
    at_least, total, worst = 0, 0, []
    for key, series in panels.items():
        for seq in sorted(series.get(ours, {})):
            if seq not in series.get(theirs, {}):
                continue
            total += 1
            ratio = series[ours][seq] / series[theirs][seq]
            at_least += ratio >= 1
            led = sum(x >= y for x, y in zip(runs[(key, ours, seq)], runs[(key, theirs, seq)]))
            worst.append((ratio, key, seq, led, len(runs[(key, ours, seq)])))
    print(f"{ours} at least {theirs}: {at_least} of {total} points (medians)")
    for ratio, (d, h, k, causal), seq, led, n in sorted(worst)[:3]:
        print(f"  closest: D={d} {h}/{k} {'causal' if causal else 'non-causal'} S={seq}: "
              f"{100 * (ratio - 1):+.1f}%, ahead in {led} of {n} rounds")

# SVG: panels in a row of up to 3
W, H, M = 360, 260, 48
cols = min(3, len(panels))
nrows = math.ceil(len(panels) / cols)
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * cols}" height="{H * nrows + 30}" '
       'font-family="sans-serif" font-size="11">', '<rect width="100%" height="100%" fill="white"/>']
ymax = max(r["TFLOPs"] for r in rows)
ymax = 100 * math.ceil(ymax / 100)
for i, (key, series) in enumerate(panels.items()):
    d, h, k, causal = key
    ox, oy = (i % cols) * W, (i // cols) * H
    seqs = sorted({s for v in series.values() for s in v})
    lo, hi = math.log2(seqs[0]), math.log2(seqs[-1])
    px = lambda s: ox + M + (math.log2(s) - lo) / max(hi - lo, 1) * (W - M - 20)
    py = lambda t: oy + H - M + 10 - t / ymax * (H - M - 30)
    out.append(f'<text x="{ox + W / 2}" y="{oy + 16}" text-anchor="middle" font-weight="bold">'
               f'D={d}, heads {h}/{k}, {"causal" if causal else "non-causal"}</text>')
    for t in range(0, ymax + 1, 100):
        out.append(f'<line x1="{ox + M}" x2="{ox + W - 20}" y1="{py(t)}" y2="{py(t)}" stroke="#ddd"/>')
        out.append(f'<text x="{ox + M - 4}" y="{py(t) + 4}" text-anchor="end">{t}</text>')
    for s in seqs:
        out.append(f'<text x="{px(s)}" y="{py(0) + 14}" text-anchor="middle">{s // 1024}k</text>'
                   if s >= 1024 else f'<text x="{px(s)}" y="{py(0) + 14}" text-anchor="middle">{s}</text>')
    out.append(f'<text x="{ox + 12}" y="{oy + H / 2}" transform="rotate(-90 {ox + 12} {oy + H / 2})" '
               'text-anchor="middle">TFLOP/s</text>')
    for impl, _, color in IMPLS:
        pts = sorted(series.get(impl, {}).items())
        if pts:
            out.append('<polyline fill="none" stroke-width="2" stroke="%s" points="%s"/>' %
                       (color, " ".join(f"{px(s):.1f},{py(t):.1f}" for s, t in pts)))
            out += [f'<circle cx="{px(s):.1f}" cy="{py(t):.1f}" r="2.5" fill="{color}"/>' for s, t in pts]
ly = H * nrows + 18
present = {r["impl"] for r in rows}
for j, (_, label, color) in enumerate(i for i in IMPLS if i[0] in present):
    out.append(f'<rect x="{20 + 150 * j}" y="{ly - 9}" width="12" height="12" fill="{color}"/>')
    out.append(f'<text x="{36 + 150 * j}" y="{ly + 1}">{label}</text>')
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
