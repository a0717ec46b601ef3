#!/usr/bin/env python3
"""Random-weight bf16 Llama checkpoints in HF format, with the shapes of Llama-3.2-1B and
Llama-3.1-8B, for `kvscope bench` and bench/hf_peer.py on the GPU machine. Nothing is
downloaded: the configs are written out here and the weights are drawn from a seeded normal
(transformers' own init, initializer_range 0.02).

    python3 bench/make_random_models.py --out out/models [--shapes 1b,8b] [--device cuda]

writes <out>/llama-3.2-1b-shape/ and <out>/llama-3.1-8b-shape/ (config.json, model*.safetensors,
tokenizer.json). Sizes: 1B shape 2.5 GB (tied embeddings), 8B shape 16.1 GB.

Vocabulary: the models keep Llama-3's 128256-row embedding and lm_head (so the bytes a decode step
reads are the real ones), but the tokenizer is the bundled demo's 8192-token BPE
(resources/models/kvscope-demo/tokenizer.json, BOS 0, EOS 1), so ids >= 8192 are never produced
by it. Benchmarks feed random token ids below 8192; the text does not matter for timing.

Needs torch, transformers (5.x; 4.4x also works) and safetensors.
"""
import argparse
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_TOKENIZER = os.path.join(ROOT, "resources", "models", "kvscope-demo", "tokenizer.json")

# Shapes from the public config.json files of meta-llama/Llama-3.2-1B and Llama-3.1-8B.
SHAPES = {
    "1b": dict(name="llama-3.2-1b-shape", hidden_size=2048, intermediate_size=8192,
               num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
               tie_word_embeddings=True, rope_factor=32.0),
    "8b": dict(name="llama-3.1-8b-shape", hidden_size=4096, intermediate_size=14336,
               num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
               tie_word_embeddings=False, rope_factor=8.0),
}
VOCAB = 128256
ROPE = dict(rope_type="llama3", rope_theta=500000.0, low_freq_factor=1.0, high_freq_factor=4.0,
            original_max_position_embeddings=8192)


def make_config(shape):
    import transformers
    from transformers import LlamaConfig

    kw = dict(vocab_size=VOCAB, hidden_size=shape["hidden_size"],
              intermediate_size=shape["intermediate_size"],
              num_hidden_layers=shape["num_hidden_layers"],
              num_attention_heads=shape["num_attention_heads"],
              num_key_value_heads=shape["num_key_value_heads"], head_dim=shape["head_dim"],
              max_position_embeddings=131072, rms_norm_eps=1e-5, hidden_act="silu",
              attention_bias=False, mlp_bias=False, initializer_range=0.02,
              tie_word_embeddings=shape["tie_word_embeddings"], bos_token_id=0, eos_token_id=1,
              pad_token_id=2)
    rope = dict(ROPE, factor=shape["rope_factor"])
    major = int(transformers.__version__.split(".")[0])
    if major >= 5:
        kw["rope_parameters"] = rope
    else:
        kw["rope_theta"] = rope.pop("rope_theta")
        kw["rope_scaling"] = rope
    return LlamaConfig(**kw)


def build(shape_key, out_dir, device, seed):
    import torch
    from transformers import LlamaForCausalLM

    shape = SHAPES[shape_key]
    path = os.path.join(out_dir, shape["name"])
    if os.path.exists(os.path.join(path, "config.json")):
        print(f"{path}: exists, kept (delete it to rebuild)")
        return path
    os.makedirs(path, exist_ok=True)
    cfg = make_config(shape)
    torch.manual_seed(seed)
    t0 = time.time()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    model = model.to(torch.bfloat16).eval()
    n = sum(p.numel() for p in model.parameters())
    print(f"{shape['name']}: {n / 1e9:.2f} B parameters, made in {time.time() - t0:.1f} s on {device}")
    t0 = time.time()
    model.save_pretrained(path, max_shard_size="5GB")  # safetensors (the only format in 5.x)
    shutil.copy(DEMO_TOKENIZER, os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "KVSCOPE_README.txt"), "w") as f:
        f.write("Random weights (seed %d) with the shape of %s; tokenizer: the KVScope demo's "
                "8192-token BPE. Made by bench/make_random_models.py for benchmarks only.\n"
                % (seed, shape["name"]))
    print(f"{shape['name']}: saved to {path} in {time.time() - t0:.1f} s")
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder that receives one folder per model")
    ap.add_argument("--shapes", default="1b,8b", help="comma-separated: 1b, 8b")
    ap.add_argument("--device", default=None, help="where to draw the weights (default: cuda if present)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import torch

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    os.makedirs(a.out, exist_ok=True)
    paths = {}
    for key in a.shapes.split(","):
        key = key.strip()
        if key not in SHAPES:
            sys.exit(f"unknown shape '{key}' (expected one of {', '.join(SHAPES)})")
        paths[key] = build(key, a.out, device, a.seed)
    print(json.dumps(paths, indent=2))


if __name__ == "__main__":
    main()
