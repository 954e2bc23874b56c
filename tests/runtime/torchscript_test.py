#!/usr/bin/python3
"""The user's own TorchScript model, end to end with the real binaries.

  torchscript_test.py --bin DIR --sampler-order PATH --case parity|stella [--json OUT]

parity: a 2-layer MLP exported with torch.jit.script trains on .npy data
  (Fashion-MNIST-shaped, synthetic, deterministic) with stella-runtime in ddp
  mode (1 cluster, 2 workers) and with real torch DistributedDataParallel
  (Gloo, 2 processes) that torch.jit.load's the same file, same data order
  (the runtime's BatchSampler, printed by sampler_order), same SGD. The mean
  loss of the first 20 steps must agree to float tolerance.
stella: a tiny traced causal char-level LM trains on a uint16 token file in
  stella mode through `stella run`; the validation loss must fall well below
  the untrained model's ln(vocab) and the summary report accuracy -1.
Both also run `stella validate` on the good job (ok) and on a broken model
(refused, naming the file).
"""

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
EXPORT = os.path.join(HERE, "..", "..", "examples", "export_torchscript.py")
STEPS, BATCH, LR, MOMENTUM, SEED = 20, 16, 0.05, 0.9, 3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export(out, *args):
    subprocess.run([sys.executable, EXPORT, "--out", out, *args], check=True, stdout=subprocess.DEVNULL)


def write_npy(d, n=512):
    rng = np.random.default_rng(7)
    teacher = rng.normal(size=(784, 10)).astype(np.float32)
    paths = {}
    for split, count in (("train", n), ("val", 128)):
        x = rng.normal(size=(count, 1, 28, 28)).astype(np.float32)
        y = (x.reshape(count, -1) @ teacher).argmax(1).astype(np.int64)
        paths[split] = (os.path.join(d, split + "-x.npy"), os.path.join(d, split + "-y.npy"))
        np.save(paths[split][0], x)
        np.save(paths[split][1], y)
    return paths


def job_yaml(name, model, dataset, mode, steps, optimizer):
    return f"""apiVersion: stella.dev/v1alpha1
kind: StellaJob
metadata:
  name: {name}
spec:
  model:
{model}
  dataset:
{dataset}
  optimizer: {optimizer}
  batchSize: {BATCH}
  training:
    steps: {steps}
    evalEvery: 100000
    seed: {SEED}
  sync:
    mode: {mode}
  metrics:
    port: 0
  clusters:
    - name: a
      workers: 2
"""


def check_validate(bindir, job, bad_job, bad_model):
    stella = os.path.join(bindir, "stella")
    ok = subprocess.run([stella, "validate", job], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == "ok", ok.stdout + ok.stderr
    bad = subprocess.run([stella, "validate", bad_job], capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "spec.model.torchscript: " + bad_model in bad.stderr, bad.stderr
    print("validate: ok; broken model refused:", bad.stderr.splitlines()[0])


def runtime_losses(bindir, job):
    port = free_port()
    cmd = [os.path.join(bindir, "stella-runtime"), "--job", job, "--cluster-index", "0", "--store-port", str(port),
           "--progress-every", "1", "--threads", "1"]
    other = subprocess.Popen(cmd + ["--local-rank", "1"], stdout=subprocess.DEVNULL)
    rank0 = subprocess.run(cmd + ["--local-rank", "0"], capture_output=True, text=True, timeout=300)
    assert other.wait(timeout=60) == 0 and rank0.returncode == 0, rank0.stderr
    events = [json.loads(l[len("@stella "):]) for l in rank0.stdout.splitlines() if l.startswith("@stella ")]
    losses = {e["step"]: e["loss"] for e in events if e["event"] == "progress"}
    done = [e for e in events if e["event"] == "done"][0]
    return [losses[s] for s in range(1, STEPS + 1)], done


def ddp_worker(rank, model_path, x_path, y_path, order, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    model = torch.nn.parallel.DistributedDataParallel(torch.jit.load(model_path))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x, y = np.load(x_path, mmap_mode="r"), np.load(y_path)
    losses = []
    for step in range(STEPS):
        idx = order[step][rank * BATCH:(rank + 1) * BATCH]
        opt.zero_grad()
        loss = F.cross_entropy(model(torch.from_numpy(np.ascontiguousarray(x[idx]))), torch.from_numpy(y[idx]))
        loss.backward()
        opt.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / 2)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(losses, f)
    dist.destroy_process_group()


def parity(args, d):
    model = os.path.join(d, "mlp.pt")
    export(model, "--model", "mlp", "--hidden", "32")
    paths = write_npy(d)
    dataset = (f"    format: npy\n    path: {paths['train'][0]}\n    labelsPath: {paths['train'][1]}\n"
               f"    validationPath: {paths['val'][0]}\n    validationLabelsPath: {paths['val'][1]}")
    optimizer = f"{{name: sgd, learningRate: {LR}, momentum: {MOMENTUM}}}"
    job = os.path.join(d, "job.yaml")
    with open(job, "w") as f:
        f.write(job_yaml("ts-parity", f"    torchscript: {model}", dataset, "ddp", STEPS, optimizer))
    ours, done = runtime_losses(args.bin, job)
    order = [[int(i) for i in line.split()] for line in subprocess.run(
        [args.sampler_order, "512", "2", str(SEED), str(BATCH), str(STEPS)],
        capture_output=True, text=True, check=True).stdout.splitlines()]
    out = os.path.join(d, "ddp.json")
    torch.multiprocessing.spawn(ddp_worker, args=(model, *paths["train"], order, free_port(), out), nprocs=2)
    with open(out) as f:
        theirs = json.load(f)
    diffs = [abs(a - b) for a, b in zip(ours, theirs)]
    for s, (a, b) in enumerate(zip(ours, theirs), 1):
        print(f"step {s:2d}  stella-runtime {a:.7f}  torch DDP {b:.7f}  diff {abs(a - b):.2e}")
    print(f"max |diff| over {STEPS} steps: {max(diffs):.3e}; final accuracy {done['final_accuracy']}")
    assert all(dd <= 1e-5 + 1e-4 * abs(b) for dd, b in zip(diffs, theirs)), "losses differ beyond float tolerance"
    assert ours[-1] < ours[0], "loss did not fall"
    return {"max_abs_diff": max(diffs), "runtime_losses": ours, "ddp_losses": theirs, "done": done}


def write_tokens(d, vocab=64, seq=16):
    # Text with structure a tiny LM can learn: words from a small lexicon.
    rng = np.random.default_rng(11)
    words = [rng.integers(1, vocab, size=rng.integers(2, 6)) for _ in range(40)]
    def stream(n):
        out = []
        while len(out) < n:
            out.extend(words[rng.integers(len(words))].tolist() + [0])
        return np.array(out[:n], dtype="<u2")
    stream(40000).tofile(os.path.join(d, "train.bin"))
    stream(4000).tofile(os.path.join(d, "val.bin"))
    return os.path.join(d, "train.bin"), os.path.join(d, "val.bin")


def stella_lm(args, d):
    vocab, seq = 64, 16
    model = os.path.join(d, "lm.pt")
    export(model, "--model", "charlm", "--trace", "--vocab", str(vocab), "--seq", str(seq))
    train, val = write_tokens(d, vocab, seq)
    dataset = f"    format: tokens\n    path: {train}\n    validationPath: {val}\n    sequenceLength: {seq}"
    job = os.path.join(d, "job.yaml")
    with open(job, "w") as f:
        f.write(job_yaml("ts-lm", f"    torchscript: {model}\n    task: language-model", dataset, "stella", 150,
                         "{name: adam, learningRate: 0.01}"))
    summary = os.path.join(d, "summary.json")
    run = subprocess.run([os.path.join(args.bin, "stella"), "run", job, "--json", summary, "--log-dir",
                          os.path.join(d, "logs"), "--timeout", "240"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    with open(summary) as f:
        s = json.load(f)
    print(f"stella mode LM: validation loss {s['final_validation_loss']:.4f} (untrained ~ ln {vocab} = "
          f"{math.log(vocab):.4f}), accuracy {s['final_accuracy']}, {s['steps']} steps, {s['wall_seconds']:.1f} s")
    assert s["final_accuracy"] == -1, s
    assert 0 < s["final_validation_loss"] < 0.75 * math.log(vocab), s
    check_truncated_tokens(args.bin, d, job, train)
    return s


def check_truncated_tokens(bindir, d, job, train):
    cut = os.path.join(d, "cut.bin")
    with open(train, "rb") as f, open(cut, "wb") as g:
        g.write(f.read()[:1001])
    bad_job = os.path.join(d, "cut.yaml")
    with open(job) as f, open(bad_job, "w") as g:
        g.write(f.read().replace(f"path: {train}", f"path: {cut}"))
    bad = subprocess.run([os.path.join(bindir, "stella"), "validate", bad_job], capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    want = f"spec.dataset.path: {cut}: 1001 bytes is not a whole number of 2-byte uint16 tokens"
    assert want in bad.stderr and "expected 1002 or 1000 bytes" in bad.stderr, bad.stderr
    print("validate: truncated token file refused:", bad.stderr.splitlines()[0])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--sampler-order")
    p.add_argument("--case", choices=["parity", "stella"], required=True)
    p.add_argument("--json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="stella-ts-") as d:
        result = parity(args, d) if args.case == "parity" else stella_lm(args, d)
        bad_model = os.path.join(d, "two-inputs.pt")
        torch.jit.save(torch.jit.script(TwoInputs()), bad_model)
        job = os.path.join(d, "job.yaml")
        bad_job = os.path.join(d, "bad.yaml")
        with open(job) as f, open(bad_job, "w") as g:
            g.write("\n".join(l.split(":")[0] + ": " + bad_model if l.strip().startswith("torchscript:") else l
                              for l in f.read().splitlines()) + "\n")
        check_validate(args.bin, job, bad_job, bad_model)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    print("PASS")


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + y


if __name__ == "__main__":
    main()
