#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tokenizer speed, Forge beside Hugging Face's `tokenizers` on one machine:
for each tokenizer.json of the cache, the time to load it and to encode each
text file (the best of three). Forge is timed as a process, `forge tokenize`
with no text (load) and with the file (load + encode); tokenizers in this
process, `Tokenizer.from_file` and `encode(text)`. The ids of the two must
be equal, or the row says so.

  python3 bench/tokenizer_speed.py FORGE CACHE_DIR TEXT...
"""
import os
import subprocess
import sys
import time

import tokenizers

forge, cache, texts = sys.argv[1], sys.argv[2], sys.argv[3:]


def best(f, n=3):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return min(times), out


print("tokenizers", tokenizers.__version__, "on", os.cpu_count(), "CPUs")
print("| tokenizer | text | Forge load | Forge encode | tokenizers load | tokenizers encode | ids | same ids |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for name in sorted(os.listdir(cache)):
    path = os.path.join(cache, name, "tokenizer.json")
    if not os.path.isfile(path):
        continue
    run = lambda *a: subprocess.run([forge, "tokenize", "--model", path, *a], check=True, capture_output=True).stdout
    forge_load, _ = best(lambda: run("--text", ""))
    hf_load, tok = best(lambda: tokenizers.Tokenizer.from_file(path))
    for text_path in texts:
        text = open(text_path, encoding="utf-8", newline="").read()  # "\r" kept, as forge reads it
        forge_all, forge_ids = best(lambda: run("--file", text_path))
        hf_encode, enc = best(lambda: tok.encode(text, add_special_tokens=True))
        same = [int(x) for x in forge_ids.split()] == enc.ids
        print(f"| {name} | {os.path.basename(text_path)} | {forge_load:.2f} s | {forge_all - forge_load:.2f} s "
              f"| {hf_load:.2f} s | {hf_encode:.2f} s | {len(enc.ids):,} | {'yes' if same else 'NO'} |", flush=True)
