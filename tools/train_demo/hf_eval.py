#!/usr/bin/env python3
"""What train.py reports of a trained model besides its needle grid: perplexity over a token
stream (1024-token windows, each after <|begin_of_text|>), the grid's per-task totals and its
printed tables. Runs on the GPU machine (torch); train.py imports it."""
import math
import sys

import torch
import torch.nn.functional as F


def grid_summary(grid):
    """Accuracy per task (needles-train and needles-heldout apart): {task: {correct, total,
    accuracy}}."""
    out = {}
    for g in grid:
        t = out.setdefault(g["task"], {"correct": 0, "total": 0})
        t["correct"] += g["correct"]
        t["total"] += g["trials"]
    for t in out.values():
        t["accuracy"] = t["correct"] / max(1, t["total"])
    return out


@torch.no_grad()
def perplexity(model, tok, stream, window=1024, max_tokens=400_000):
    model.eval()
    nll, n = 0.0, 0
    for off in range(0, min(len(stream), max_tokens) - window, window):
        ids = [tok.bos] + stream[off:off + window].tolist()
        x = torch.tensor([ids], device="cuda")
        logits = model(input_ids=x[:, :-1]).logits.float()
        nll += float(F.cross_entropy(logits[0], x[0, 1:], reduction="sum"))
        n += window
    return math.exp(nll / max(1, n)), n


def print_grid(grid, lengths, depths):
    for kind in dict.fromkeys(g["task"] for g in grid):
        print(f"\n{kind} accuracy (rows: context length, columns: depth)")
        print("length " + " ".join(f"{d:>6.2f}" for d in depths))
        for L in lengths:
            cells = [g for g in grid if g["task"] == kind and g["length"] == L]
            print(f"{L:6d} " + " ".join(f"{c['accuracy'] * 100:5.0f}%" for c in cells))
    sys.stdout.flush()
