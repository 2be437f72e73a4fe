#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Forge's model engine against Hugging Face transformers, on the GPU machine
(transformers runs there; its CPU code is the oracle, nothing downloaded):
for each architecture, a small model with random weights made by
transformers and written by save_pretrained (safetensors; the Llama 3.1
model in shards), loaded by Forge's library through ctypes, and checked:
  - the logits of every token of a prompt: in fp32 within 1e-4 (relative
    L2) of transformers' fp32; in bf16 or fp16 within twice transformers'
    own error in that dtype (against its fp32);
  - in fp32, greedy generation of 64 tokens from three prompts of different
    lengths run by Forge in one batch, each identical to transformers'
    generate of that prompt alone (its EOS id unset, so that it neither
    stops at it nor forbids it; do_sample off).
With --tp N Forge splits each model over N ranks (GPUs on CUDA); the
checks are the same.
A model whose feature the backend refuses by name (its support table
lacks it) is reported as skipped, with the message. One line a check;
exits 1 when any fails.

  python3 bench/model_check.py LIBFORGE [--backend cpu|cuda] [--dtype fp32|bf16|fp16] [--tp N] [--keep DIR]
"""
import argparse
import ctypes as C
import os
import sys
import tempfile

import numpy as np
import torch
import transformers as tf

NEW = 64
PROMPTS = (5, 17, 33)


class Options(C.Structure):
    _fields_ = [("dtype", C.c_int), ("max_seqs", C.c_int), ("max_tokens", C.c_int), ("max_seq_len", C.c_int),
                ("page_size", C.c_int), ("tensor_parallel", C.c_int)]


class Input(C.Structure):
    _fields_ = [("seq", C.c_int), ("n_tokens", C.c_int), ("tokens", C.POINTER(C.c_int32))]


class Forge:
    def __init__(self, path, backend, tp):
        self.tp = tp
        self.lib = C.CDLL(path)
        self.lib.forge_last_error.restype = C.c_char_p
        self.ctx = C.c_void_p()
        self.ok(self.lib.forge_context_create({"cpu": 1, "cuda": 2}[backend], C.byref(self.ctx)))

    def ok(self, status):
        if status != 0:
            raise RuntimeError(self.lib.forge_last_error().decode())

    def load(self, model_dir, max_seqs, max_tokens, dtype):
        m = C.c_void_p()
        opt = Options({"fp32": 0, "fp16": 1, "bf16": 2}[dtype], max_seqs, max_tokens, 0, 0, self.tp)
        self.ok(self.lib.forge_model_load(self.ctx, model_dir.encode(), C.byref(opt), C.byref(m)))
        return m

    def step(self, model, seqs, chunks, vocab, all_logits=False):
        arrays = [np.ascontiguousarray(c, dtype=np.int32) for c in chunks]
        ins = (Input * len(seqs))(*[Input(s, len(a), a.ctypes.data_as(C.POINTER(C.c_int32)))
                                    for s, a in zip(seqs, arrays)])
        rows = sum(len(a) for a in arrays) if all_logits else len(seqs)
        out = np.empty((rows, vocab), dtype=np.float32)
        self.ok(self.lib.forge_model_step(model, ins, len(seqs), int(all_logits),
                                          out.ctypes.data_as(C.POINTER(C.c_float))))
        return out

    def seq_new(self, model):
        s = C.c_int()
        self.ok(self.lib.forge_model_seq_new(model, C.byref(s)))
        return s.value


def models():
    # head dims 64 and 128: what the CUDA backend runs in 16 bits
    small = dict(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.1)
    yield "llama, tied", tf.LlamaConfig(**small, tie_word_embeddings=True), None
    yield "llama, llama3 rope scaling, shards", tf.LlamaConfig(**small, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32}), "100KB"
    yield "qwen2, biases", tf.Qwen2Config(**small), None
    yield "qwen3, qk norm, head_dim 128", tf.Qwen3Config(**small, head_dim=128), None
    yield "mistral", tf.MistralConfig(**small, sliding_window=None), None
    # windows shorter than the prompts: generation runs past them
    yield "mistral, sliding window 8", tf.MistralConfig(**small, sliding_window=8), None
    yield "qwen2, sliding window 8 from layer 1", tf.Qwen2Config(**small, use_sliding_window=True, sliding_window=8,
                                                                  max_window_layers=1), None


def check(forge, name, cfg, shard, work, dtype):
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    # no EOS: generate would otherwise stop at it, or (min_new_tokens) forbid
    # it where Forge's argmax may take it
    model.generation_config.eos_token_id = None
    path = os.path.join(work, name.split(",")[0] + ("-shards" if shard else ""))
    model.save_pretrained(path, safe_serialization=True, **({"max_shard_size": shard} if shard else {}))
    shards = len([f for f in os.listdir(path) if f.endswith(".safetensors")])
    vocab = cfg.vocab_size
    rng = np.random.default_rng(1)
    prompts = [rng.integers(0, vocab, n) for n in PROMPTS]
    m = forge.load(path, len(prompts), 4 * (max(PROMPTS) + NEW), dtype)
    failed = 0
    try:
        # logits of every token of the longest prompt
        seq = forge.seq_new(m)
        got = forge.step(m, [seq], [prompts[-1]], vocab, all_logits=True)
        forge.ok(forge.lib.forge_model_seq_release(m, seq))
        with torch.no_grad():
            want = model(torch.tensor(prompts[-1])[None]).logits[0].float().numpy()
        rel = float(np.linalg.norm(got - want) / np.linalg.norm(want))
        if dtype == "fp32":
            bound, what = 1e-4, "bound 1e-4"
        else:  # transformers' own error in this dtype, against its fp32
            narrow = tf.AutoModelForCausalLM.from_pretrained(path, dtype={"bf16": torch.bfloat16,
                                                                          "fp16": torch.float16}[dtype]).eval()
            with torch.no_grad():
                theirs = narrow(torch.tensor(prompts[-1])[None]).logits[0].float().numpy()
            own = float(np.linalg.norm(theirs - want) / np.linalg.norm(want))
            bound, what = 2 * own, f"bound twice transformers' {dtype} error {own:.2e}"
        ok = rel <= bound
        failed += not ok
        print(f"{'ok' if ok else 'FAILED'}: {name} ({shards} file{'s' if shards > 1 else ''}, {dtype}): logits of "
              f"{len(prompts[-1])} tokens, relative L2 {rel:.2e} ({what})", flush=True)
        if dtype != "fp32":
            return failed
        # greedy generation, the prompts in one batch
        seqs = [forge.seq_new(m) for _ in prompts]
        logits = forge.step(m, seqs, prompts, vocab)
        tokens = [[] for _ in prompts]
        for _ in range(NEW):
            nxt = logits.argmax(axis=1)
            for t, n in zip(tokens, nxt):
                t.append(int(n))
            if len(tokens[0]) == NEW:
                break
            logits = forge.step(m, seqs, [[int(n)] for n in nxt], vocab)
        for s in seqs:
            forge.ok(forge.lib.forge_model_seq_release(m, s))
        for p, t in zip(prompts, tokens):
            with torch.no_grad():
                out = model.generate(torch.tensor(p)[None], attention_mask=torch.ones(1, len(p), dtype=torch.long),
                                     max_new_tokens=NEW, do_sample=False, pad_token_id=0,
                                     output_scores=True, return_dict_in_generate=True)
            want = out.sequences[0, len(p):].tolist()
            same = next((i for i, (a, b) in enumerate(zip(t, want)) if a != b), None)
            failed += same is not None
            if same is not None:  # how close transformers' two best logits were there
                top = torch.topk(out.scores[same][0].float(), 2).values
                gap = f", where transformers' two best logits are {float(top[0]):.6f} and {float(top[1]):.6f}"
            print(f"{'ok' if same is None else 'FAILED'}: {name}: greedy {NEW} tokens after {len(p)}, "
                  + ("identical to generate" if same is None else
                     f"differ from token {same} ({t[same]} vs {want[same]}{gap})"), flush=True)
    finally:
        forge.lib.forge_model_free(m)
    return failed


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lib")
    p.add_argument("--backend", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--tp", type=int, default=0, help="ranks to split each model over (0: whole)")
    p.add_argument("--keep", help="write the models here and keep them")
    a = p.parse_args()
    print("transformers", tf.__version__, "torch", torch.__version__, "backend", a.backend, a.dtype,
          f"tp {a.tp}" if a.tp else "")
    forge = Forge(a.lib, a.backend, a.tp)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = a.keep or tmp
        os.makedirs(work, exist_ok=True)
        for name, cfg, shard in models():
            try:
                failed += check(forge, name, cfg, shard, work, a.dtype)
            except RuntimeError as e:
                refused = "is not implemented by the" in str(e)  # a feature the backend's support table lacks
                print(f"{'skipped' if refused else 'FAILED'}: {name}: {e}", flush=True)
                failed += not refused
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
