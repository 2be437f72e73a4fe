#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The reference ids of the tokenizer tests, from Hugging Face's own
`tokenizers` (its CPU code; run where it is installed, the GPU machine):
for each tokenizer.json of scripts/fetch-tokenizers.sh's cache and each text
of tests/tokenizer/corpus.json, the ids with and without special tokens and
the decodes of the former, with and without them; and the same for each
variant of tests/tokenizer/variants.json (a real file with some components
replaced, for the components no fetched file uses). One JSON file a
tokenizer, committed (texts and ids only; the tokenizer files stay in npm's
packages).

  python3 bench/tokenizer_fixtures.py CACHE_DIR OUT_DIR
"""
import json
import os
import sys
import tempfile

import tokenizers

cache, out = sys.argv[1], sys.argv[2]
here = os.path.join(os.path.dirname(__file__), "..", "tests", "tokenizer")
corpus = json.load(open(os.path.join(here, "corpus.json"), encoding="utf-8"))
os.makedirs(out, exist_ok=True)


def fixture(name, path):
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


for name in sorted(os.listdir(cache)):
    path = os.path.join(cache, name, "tokenizer.json")
    if os.path.isfile(path):
        fixture(name, path)

# the variants: a real file with some components replaced
# (tests/tokenizer/variants.json; test_tokenizer.c writes the same files)
with tempfile.TemporaryDirectory() as tmp:
    for v in json.load(open(os.path.join(here, "variants.json"), encoding="utf-8")):
        doc = json.load(open(os.path.join(cache, v["base"], "tokenizer.json"), encoding="utf-8"))
        doc.update(v["replace"])
        path = os.path.join(tmp, v["name"] + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False)
        fixture(v["name"], path)
