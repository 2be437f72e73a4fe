#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The reference ids of the tokenizer tests, from Hugging Face's own
`tokenizers` (its CPU code; run where it is installed, the GPU machine):
for each tokenizer.json of scripts/fetch-tokenizers.sh's cache and each text
of tests/tokenizer/corpus.json, the ids with and without special tokens and
the decodes of the former, with and without them. One JSON file a tokenizer,
committed (texts and ids only; the tokenizer files stay in npm's packages).

  python3 bench/tokenizer_fixtures.py CACHE_DIR OUT_DIR
"""
import json
import os
import sys

import tokenizers

cache, out = sys.argv[1], sys.argv[2]
corpus = json.load(open(os.path.join(os.path.dirname(__file__), "..", "tests", "tokenizer", "corpus.json")))
os.makedirs(out, exist_ok=True)
for name in sorted(os.listdir(cache)):
    path = os.path.join(cache, name, "tokenizer.json")
    if not os.path.isfile(path):
        continue
    tok = tokenizers.Tokenizer.from_file(path)
    cases = []
    for text in corpus:
        ids = tok.encode(text, add_special_tokens=True).ids
        plain = tok.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids": ids, "ids_no_special": plain,
                      "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
    doc = {"tokenizer": name, "tokenizers_version": tokenizers.__version__,
           "vocab_size": tok.get_vocab_size(with_added_tokens=True), "cases": cases}
    with open(os.path.join(out, name + ".json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(name, len(cases), "cases", doc["vocab_size"], "tokens")
