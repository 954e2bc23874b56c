#!/usr/bin/python3
"""Writes the TorchScript files model_check_test.cc checks, into DIR.

  good.pt        scripted MLP, [B, 1, 4, 4] -> [B, 3]
  traced.pt      the same MLP, traced
  not_ts.pt      a text file
  state_dict.pt  torch.save of a state dict (a zip, but not TorchScript)
  two_inputs.pt  forward(x, y)
  narrow.pt      [B, 1, 4, 4] -> [B, 2]: too few classes for labels up to 2
  newer.pt       good.pt with its version record set to 99 (a newer PyTorch)
  lm.pt          tokens [B, T] -> [B, T, 8]
  params.bin     good.pt's parameters, flat little-endian float32
"""
import os
import sys
import zipfile

import numpy as np
import torch
import torch.nn as nn


class Mlp(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1)) + y


class Lm(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(8, 4)
        self.head = nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(x))


def rewrite_version(src, dst, version):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("/version"):
                data = f"{version}\n".encode()
            zout.writestr(item, data)


def main(d):
    torch.manual_seed(0)
    good = Mlp()
    torch.jit.save(torch.jit.script(good), os.path.join(d, "good.pt"))
    torch.jit.save(torch.jit.trace(good, torch.zeros(2, 1, 4, 4)), os.path.join(d, "traced.pt"))
    np.concatenate([p.detach().numpy().ravel() for p in good.parameters()]).astype("<f4").tofile(
        os.path.join(d, "params.bin"))
    with open(os.path.join(d, "not_ts.pt"), "w") as f:
        f.write("this is not a model\n")
    torch.save(good.state_dict(), os.path.join(d, "state_dict.pt"))
    torch.jit.save(torch.jit.script(TwoInputs()), os.path.join(d, "two_inputs.pt"))
    torch.jit.save(torch.jit.script(Mlp(classes=2)), os.path.join(d, "narrow.pt"))
    rewrite_version(os.path.join(d, "good.pt"), os.path.join(d, "newer.pt"), 99)
    torch.jit.save(torch.jit.script(Lm()), os.path.join(d, "lm.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
