#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Draws the decode sweep (scripts/decode-sweep.sh) as an SVG: one panel per
batch size, TB/s of K and V read against the cached length, Forge beside
PyTorch's SDPA backends; prints the medians of the rounds as a markdown
table and where Forge stands against the best PyTorch backend at each
point. No dependencies beyond the standard library.

  python3 bench/plot_decode.py decode.jsonl decode.svg
"""
import json
import math
import statistics
import sys

IMPLS = [("forge-cuda", "Forge", "#d62728"), ("torch-flash", "PyTorch flash", "#1f77b4"),
         ("torch-cudnn", "PyTorch cuDNN", "#2ca02c")]

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
runs = {}  # (batch, impl, kv_len) -> [TB/s of each round]
split = {}  # (batch, kv_len) -> Forge's splits, split size and page size
for r in rows:
    if "TBps" in r:
        runs.setdefault((r["batch"], r["impl"], r["kv_len"]), []).append(r["TBps"])
    if "splits" in r:
        split[(r["batch"], r["kv_len"])] = f'{r["splits"]} x {r["split_size"]} | {r["page_size"]}'
med = {k: statistics.median(v) for k, v in runs.items()}
batches = sorted({b for b, _, _ in med})
lens = sorted({l for _, _, l in med})

print("| batch | kv_len | " + " | ".join(label for _, label, _ in IMPLS) +
      " | Forge / best PyTorch | Forge's splits x tokens | page size |")
print("|---|---|" + "---|" * (len(IMPLS) + 3))
ahead, total = 0, 0
for b in batches:
    for l in lens:
        if (b, "forge-cuda", l) not in med:
            continue
        best = max((med.get((b, i, l), 0.0) for i, _, _ in IMPLS[1:]), default=0.0)
        ratio = med[(b, "forge-cuda", l)] / best if best else float("inf")
        total += 1
        ahead += ratio >= 1
        cells = " | ".join(f"{med[(b, i, l)]:.3f}" if (b, i, l) in med else "" for i, _, _ in IMPLS)
        print(f"| {b} | {l} | {cells} | {ratio:.2f} | {split.get((b, l), ' | ')} |")
print(f"\nforge-cuda at least the best PyTorch backend: {ahead} of {total} points (medians)")

W, H, M = 360, 260, 48
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(batches)}" height="{H + 30}" '
       'font-family="sans-serif" font-size="11">', '<rect width="100%" height="100%" fill="white"/>']
ymax = math.ceil(max(med.values()) * 2) / 2
for n, b in enumerate(batches):
    ox = n * W
    lo, hi = math.log2(lens[0]), math.log2(lens[-1])
    px = lambda l: ox + M + (math.log2(l) - lo) / max(hi - lo, 1) * (W - M - 20)
    py = lambda t: H - M + 10 - t / ymax * (H - M - 30)
    out.append(f'<text x="{ox + W / 2}" y="16" text-anchor="middle" font-weight="bold">'
               f'decode, batch {b}, GQA 32/8, head dim 128</text>')
    for i in range(int(ymax * 2) + 1):
        t = i / 2
        out.append(f'<line x1="{ox + M}" x2="{ox + W - 20}" y1="{py(t)}" y2="{py(t)}" stroke="#ddd"/>')
        out.append(f'<text x="{ox + M - 4}" y="{py(t) + 4}" text-anchor="end">{t:.1f}</text>')
    for l in lens:
        out.append(f'<text x="{px(l)}" y="{py(0) + 14}" text-anchor="middle">{l // 1024}k</text>')
    out.append(f'<text x="{ox + 12}" y="{H / 2}" transform="rotate(-90 {ox + 12} {H / 2})" '
               'text-anchor="middle">TB/s</text>')
    for impl, _, color in IMPLS:
        pts = sorted((l, med[(b, impl, l)]) for l in lens if (b, impl, l) in med)
        if pts:
            out.append('<polyline fill="none" stroke-width="2" stroke="%s" points="%s"/>' %
                       (color, " ".join(f"{px(l):.1f},{py(t):.1f}" for l, t in pts)))
            out += [f'<circle cx="{px(l):.1f}" cy="{py(t):.1f}" r="2.5" fill="{color}"/>' for l, t in pts]
for j, (_, label, color) in enumerate(IMPLS):
    out.append(f'<rect x="{20 + 150 * j}" y="{H + 9}" width="12" height="12" fill="{color}"/>')
    out.append(f'<text x="{36 + 150 * j}" y="{H + 19}">{label}</text>')
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
