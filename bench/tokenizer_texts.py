#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The texts of the tokenizer speed benchmark (bench/tokenizer_speed.py):
  corpus.txt  tests/tokenizer/corpus.json's texts without special tokens,
              repeated to 1.19 MB: every kind of text the tests check, but
              every word repeats, and 87% of the bytes are its three very
              long words (BPE's worst case)
  book.txt    with an HTML file given, its text (tags and scripts
              stripped), the first 1 MB: prose and code, few repeats
  python3 bench/tokenizer_texts.py OUT_DIR [BOOK_HTML]
"""
import html
import json
import os
import re
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
here = os.path.join(os.path.dirname(__file__), "..", "tests", "tokenizer")
corpus = json.load(open(os.path.join(here, "corpus.json"), encoding="utf-8"))
specials = ["<|", "<s>", "</s>", "<bos>", "<eos>", "<unk>", "<｜"]
plain = "\n".join(t for t in corpus if not any(s in t for s in specials)) + "\n"


def write(name, text, size):
    data = text.encode()[:size].decode("utf-8", "ignore").encode()  # whole characters
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
    print(name, len(data), "bytes")


write("corpus.txt", plain * (1190000 // len(plain.encode()) + 1), 1190000)
if len(sys.argv) > 2:
    page = open(sys.argv[2], encoding="utf-8").read()
    page = re.sub(r"<(script|style).*?</\1>", "", page, flags=re.S)
    write("book.txt", html.unescape(re.sub(r"<[^>]+>", "", page)), 1000000)
