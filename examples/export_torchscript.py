#!/usr/bin/python3
"""Exports a model for spec.model.torchscript with torch.jit.save.

  export_torchscript.py --model mlp --out mlp.pt [--trace] [--input-shape 1,28,28] [--classes 10]
  export_torchscript.py --model charlm --out lm.pt [--trace] [--vocab 256] [--seq 32]

mlp: Flatten -> Linear(hidden) -> ReLU -> Linear(classes), for classification
on inputs of --input-shape (Fashion-MNIST idx data arrives as [batch, 1, 28,
28], normalised to mean 0 / std 1; npy data as saved).
charlm: a tiny causal character-level language model (embedding, one
masked self-attention layer, MLP) returning [batch, seq, vocab] logits, for
spec.model.task language-model on token files.

--trace uses torch.jit.trace on an example batch instead of torch.jit.script.
Export with PyTorch 1.13 (the runtime's libtorch): a newer PyTorch may write a
file the runtime cannot read (docs/models.md).
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class Mlp(nn.Module):
    def __init__(self, features: int, hidden: int, classes: int):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class CharLm(nn.Module):
    def __init__(self, vocab: int, seq: int, width: int = 32):
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(seq, width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.ReLU(), nn.Linear(4 * width, width))
        self.head = nn.Linear(width, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.size(1)
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        att = (q @ k.transpose(1, 2)) / (q.size(-1) ** 0.5)
        mask = torch.ones(t, t, dtype=torch.bool, device=idx.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + self.proj(att @ v)
        x = x + self.mlp(x)
        return self.head(x)


def build(args):
    torch.manual_seed(args.seed)
    if args.model == "mlp":
        shape = [int(d) for d in args.input_shape.split(",")]
        features = 1
        for d in shape:
            features *= d
        return Mlp(features, args.hidden, args.classes), torch.zeros([2] + shape)
    return CharLm(args.vocab, args.seq), torch.zeros(2, args.seq, dtype=torch.long)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["mlp", "charlm"], default="mlp")
    p.add_argument("--out", required=True)
    p.add_argument("--trace", action="store_true", help="torch.jit.trace instead of torch.jit.script")
    p.add_argument("--input-shape", default="1,28,28", help="mlp: one example's shape")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--vocab", type=int, default=256, help="charlm: tokens are < vocab")
    p.add_argument("--seq", type=int, default=32, help="charlm: spec.dataset.sequenceLength")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    model, example = build(args)
    module = torch.jit.trace(model, example) if args.trace else torch.jit.script(model)
    torch.jit.save(module, args.out)
    print(f"wrote {args.out} ({'traced' if args.trace else 'scripted'} {args.model}, "
          f"{sum(p.numel() for p in model.parameters())} parameters, torch {torch.__version__})")


if __name__ == "__main__":
    main()
