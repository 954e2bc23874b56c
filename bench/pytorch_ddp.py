#!/usr/bin/python3
"""The real PyTorch DDP baseline for `stella bench`.

Trains the same model (layer for layer the cnn/mlp of
runtime/compute/model_zoo.cc, same default widths), on the same data
(Fashion-MNIST IDX files, same normalisation), with the same per-worker batch
size and optimizer as a StellaJob manifest, using real
torch.nn.parallel.DistributedDataParallel over the Gloo backend.

  pytorch_ddp.py --job JOB.yaml [--rank R] [--world-size W]
                 [--master-addr A] [--master-port P] [--steps N]
                 [--target-accuracy X] [--ideal] [--stop-check]
                 [--emulate-mbps R] [--threads T] [--progress-every K]

Rank, world size and the rendezvous address default to the usual torch
environment variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; init via
env://). Inside a network namespace set GLOO_SOCKET_IFNAME to the veth name.

Output: one JSON object per line on stdout, each with an "event" key:
  start     once the process group is up (world size, parameters, steps)
  progress  every --progress-every steps (rank 0)
  eval      every evalEvery steps and at the end (rank 0): test accuracy on
            the full 10,000-image test set
  summary   at the end (every rank): steps, samples, wall/train seconds,
            samples_per_second, final_accuracy, time_to_accuracy_seconds,
            accuracy points, a checksum of the final parameters
Times: "elapsed_seconds" is wall time since the first step; "train_seconds"
is the same minus the time spent evaluating (evaluation pauses every rank,
because the others wait for rank 0 at the next all-reduce).

--ideal trains alone (no process group, no communication) on this rank's
shard: the no-communication bound. --stop-check adds a 1-float all-reduce per
step so that SIGTERM (on any rank) stops every rank at the same step; without
it SIGTERM ends the process at once. --emulate-mbps shapes DDP's all-reduce in
process (a token bucket per rank, like Stella's in-process shaper), for users
who cannot create network namespaces; bytes are then estimated from the ring
all-reduce volume (2 (W-1)/W times the bucket per rank).
"""

import argparse
import gzip
import hashlib
import json
import os
import signal
import struct
import sys
import threading
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
import yaml

PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530


def build_model(name, hidden, rows, cols, classes, seed):
    """The Stella model zoo, layer for layer (runtime/compute/model_zoo.cc)."""
    torch.manual_seed(seed)
    pixels = rows * cols
    if name == "mlp":
        h = hidden if hidden > 0 else 256
        return nn.Sequential(nn.Flatten(), nn.Linear(pixels, h), nn.ReLU(),
                             nn.Linear(h, h // 2), nn.ReLU(), nn.Linear(h // 2, classes))
    if name == "cnn":
        if rows < 12 or cols < 12:
            raise ValueError("model cnn needs images of at least 12x12, got %dx%d" % (rows, cols))
        h = hidden if hidden > 0 else 64
        out_rows = ((rows - 4) // 2 - 4) // 2
        out_cols = ((cols - 4) // 2 - 4) // 2
        return nn.Sequential(
            nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * out_rows * out_cols, h), nn.ReLU(),
            nn.Linear(h, classes))
    raise ValueError('spec.model.name: must be one of mlp, cnn, got "%s"' % name)


def read_idx(path, expected_magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expected_magic:
        raise ValueError("%s: magic is %d, expected %d" % (path, magic, expected_magic))
    if magic == 2051:
        count, rows, cols = struct.unpack(">III", data[4:16])
        images = np.frombuffer(data, dtype=np.uint8, offset=16)
        if images.size != count * rows * cols:
            raise ValueError("%s: holds %d pixel bytes, header promises %d" % (path, images.size, count * rows * cols))
        return images.reshape(count, rows, cols)
    count = struct.unpack(">I", data[4:8])[0]
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    if labels.size != count:
        raise ValueError("%s: holds %d labels, header promises %d" % (path, labels.size, count))
    return labels


def load_split(directory, prefix):
    images = read_idx(os.path.join(directory, prefix + "-images-idx3-ubyte.gz"), 2051)
    labels = read_idx(os.path.join(directory, prefix + "-labels-idx1-ubyte.gz"), 2049)
    if len(images) != len(labels):
        raise ValueError("%s/%s: %d images but %d labels" % (directory, prefix, len(images), len(labels)))
    x = torch.from_numpy(((images.astype(np.float32) / 255.0 - PIXEL_MEAN) / PIXEL_STD)[:, None, :, :].copy())
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


class ShardSampler:
    """Rank-sharded batches: one permutation per epoch (same on every rank,
    seeded by seed and epoch), rank r takes every world-th index from r."""

    def __init__(self, size, rank, world, seed):
        self.size, self.rank, self.world, self.seed = size, rank, world, seed
        self.epoch = 0
        self._reshuffle()

    def _reshuffle(self):
        perm = np.random.default_rng(self.seed * 1000003 + self.epoch).permutation(self.size)
        self.shard = perm[self.rank::self.world]
        self.cursor = 0

    def next(self, batch):
        out = []
        while len(out) < batch:
            if self.cursor == len(self.shard):
                self.epoch += 1
                self._reshuffle()
            take = min(batch - len(out), len(self.shard) - self.cursor)
            out.extend(self.shard[self.cursor:self.cursor + take])
            self.cursor += take
        return torch.as_tensor(np.asarray(out, dtype=np.int64))


def make_optimizer(spec, params):
    o = spec.get("optimizer") or {}
    name = o.get("name", "adam")
    lr = float(o.get("learningRate", 0.001))
    wd = float(o.get("weightDecay", 0.0))
    betas = (float(o.get("beta1", 0.9)), float(o.get("beta2", 0.999)))
    eps = float(o.get("epsilon", 1e-8))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(o.get("momentum", 0.9)),
                               nesterov=bool(o.get("nesterov", False)), weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    raise ValueError('spec.optimizer.name: must be one of sgd, adam, adamw, got "%s"' % name)


class TokenBucketHookState:
    """In-process link emulation for DDP: each all-reduce of a bucket may not
    finish before its bytes could have crossed a link of `mbps`."""

    def __init__(self, mbps, world):
        self.bytes_per_second = mbps * 1e6 / 8
        self.world = world
        self.link_free_at = 0.0
        self.bytes_sent = 0
        self.lock = threading.Lock()


def shaped_allreduce_hook(state, bucket):
    tensor = bucket.buffer()
    tensor.div_(state.world)
    started = time.monotonic()
    nbytes = tensor.numel() * tensor.element_size() * 2 * (state.world - 1) / state.world
    fut = dist.all_reduce(tensor, async_op=True).get_future()

    def after(f):
        with state.lock:
            begin = max(started, state.link_free_at)
            state.link_free_at = begin + nbytes / state.bytes_per_second
            state.bytes_sent += nbytes
            done_at = state.link_free_at
        delay = done_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return f.value()[0]

    return fut.then(after)


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def evaluate(model, x, y, batch=1000):
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            logits = model(x[start:start + batch])
            loss_sum += F.cross_entropy(logits, y[start:start + batch], reduction="sum").item()
            correct += int((logits.argmax(1) == y[start:start + batch]).sum().item())
    model.train()
    return correct / len(x), loss_sum / len(x)


def parameter_checksum(model):
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def parse_args(argv):
    p = argparse.ArgumentParser(description="Real PyTorch DDP baseline on a StellaJob manifest.")
    p.add_argument("--job", required=True, help="StellaJob manifest (YAML)")
    p.add_argument("--rank", type=int, default=int(os.environ.get("RANK", "0")))
    p.add_argument("--world-size", type=int, default=int(os.environ.get("WORLD_SIZE", "1")))
    p.add_argument("--master-addr", default=os.environ.get("MASTER_ADDR", "127.0.0.1"))
    p.add_argument("--master-port", type=int, default=int(os.environ.get("MASTER_PORT", "29500")))
    p.add_argument("--steps", type=int, default=0, help="steps to train (default: the manifest's steps/epochs)")
    p.add_argument("--target-accuracy", type=float, default=None,
                   help="accuracy for time_to_accuracy_seconds (default: the manifest's, or 0.80)")
    p.add_argument("--eval-every", type=int, default=0, help="default: the manifest's evalEvery")
    p.add_argument("--ideal", action="store_true", help="train alone, no process group")
    p.add_argument("--stop-check", action="store_true", help="agree on SIGTERM across ranks every step")
    p.add_argument("--emulate-mbps", type=float, default=0.0, help="in-process link shaping of DDP (0 = off)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--progress-every", type=int, default=10)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a collective may block")
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    with open(args.job) as f:
        manifest = yaml.safe_load(f)
    spec = manifest["spec"]
    training = spec.get("training") or {}
    model_spec = spec["model"]
    batch = int(spec.get("batchSize", 64))
    seed = int(training.get("seed", 1))
    eval_every = args.eval_every or int(training.get("evalEvery", 100))
    target = args.target_accuracy
    if target is None:
        target = float(training.get("targetAccuracy", 0) or 0) or 0.80
    world = 1 if args.ideal else args.world_size
    rank = 0 if args.ideal else args.rank
    shard_rank, shard_world = args.rank, args.world_size  # --ideal keeps its shard

    stop = {"requested": False}

    def on_term(signum, frame):
        if not args.stop_check:
            sys.exit(128 + signum)
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_term)

    data_dir = (spec.get("dataset") or {}).get("path", "/usr/share/datasets/fashion-mnist")
    train_x, train_y = load_split(data_dir, "train")
    test_x, test_y = load_split(data_dir, "t10k") if rank == 0 else (None, None)
    rows, cols = train_x.shape[2], train_x.shape[3]
    classes = max(10, int(train_y.max().item()) + 1)
    if args.steps > 0:
        total_steps = args.steps
    elif int(training.get("steps", 0) or 0) > 0:
        total_steps = int(training["steps"])
    else:
        total_steps = int(np.ceil(float(training.get("epochs", 1)) * len(train_x) / (batch * shard_world)))

    model = build_model(model_spec["name"], int(model_spec.get("hidden", 0) or 0), rows, cols, classes, seed)
    hook_state = None
    if args.ideal:
        net = model
    else:
        os.environ["MASTER_ADDR"] = args.master_addr
        os.environ["MASTER_PORT"] = str(args.master_port)
        import datetime
        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=args.timeout))
        net = nn.parallel.DistributedDataParallel(model)
        if args.emulate_mbps > 0:
            hook_state = TokenBucketHookState(args.emulate_mbps, world)
            net.register_comm_hook(hook_state, shaped_allreduce_hook)
    optimizer = make_optimizer(spec, net.parameters())
    sampler = ShardSampler(len(train_x), shard_rank, shard_world, seed)
    parameters = sum(p.numel() for p in model.parameters())
    emit({"event": "start", "rank": rank, "world_size": world, "ddp": not args.ideal, "backend": "gloo",
          "parameters": parameters, "total_steps": total_steps, "batch_size": batch,
          "torch_version": torch.__version__, "threads": torch.get_num_threads(),
          "gloo_socket_ifname": os.environ.get("GLOO_SOCKET_IFNAME", "")})

    points, eval_seconds, final_accuracy, tta = [], 0.0, None, None
    start = time.monotonic()

    def run_eval(step):
        nonlocal eval_seconds, final_accuracy, tta
        t0 = time.monotonic()
        acc, loss = evaluate(model, test_x, test_y)
        t1 = time.monotonic()
        train_seconds = t0 - start - eval_seconds  # training time before this evaluation
        eval_seconds += t1 - t0
        final_accuracy = acc
        points.append([round(train_seconds, 4), acc])
        if tta is None and acc >= target:
            tta = train_seconds
        emit({"event": "eval", "step": step, "test_accuracy": acc, "test_loss": loss,
              "elapsed_seconds": t1 - start, "train_seconds": train_seconds, "eval_seconds": t1 - t0})

    step, last_loss = 0, float("nan")
    flag = torch.zeros(1)
    while step < total_steps:
        idx = sampler.next(batch)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(train_x[idx]), train_y[idx])
        loss.backward()
        optimizer.step()
        step += 1
        last_loss = loss.item()
        if rank == 0 and (step % args.progress_every == 0 or step == total_steps):
            elapsed = time.monotonic() - start
            emit({"event": "progress", "step": step, "total_steps": total_steps, "loss": last_loss,
                  "elapsed_seconds": elapsed, "train_seconds": elapsed - eval_seconds,
                  "samples_per_second": step * batch * world / max(1e-9, elapsed - eval_seconds)})
        if rank == 0 and step % eval_every == 0:
            run_eval(step)
        if args.stop_check and not args.ideal:
            flag[0] = 1.0 if stop["requested"] else 0.0
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag[0] > 0:
                break
        elif stop["requested"]:
            break
    if rank == 0 and (final_accuracy is None or step % eval_every != 0):
        run_eval(step)
    wall = time.monotonic() - start
    train_seconds = wall - eval_seconds
    samples = step * batch * world
    summary = {"event": "summary", "rank": rank, "world_size": world, "ddp": not args.ideal,
               "steps": step, "samples": samples, "wall_seconds": wall, "train_seconds": train_seconds,
               "eval_seconds": eval_seconds, "samples_per_second": samples / max(1e-9, train_seconds),
               "final_accuracy": final_accuracy, "target_accuracy": target,
               "time_to_accuracy_seconds": tta, "accuracy_points": points, "loss": last_loss,
               "parameters": parameters, "parameter_checksum": parameter_checksum(model),
               "stopped": stop["requested"],
               # DDP does not count bytes; the harness reads the link counters.
               "wan_bytes": None}
    if hook_state is not None:
        summary["emulated_mbps"] = args.emulate_mbps
        summary["estimated_bytes_sent"] = hook_state.bytes_sent
    if not args.ideal:
        dist.barrier()  # nobody leaves while a peer still needs it
    emit(summary)
    if not args.ideal:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
