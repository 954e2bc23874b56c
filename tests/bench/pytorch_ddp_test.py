"""Unit tests of bench/pytorch_ddp.py's pieces: the models match Stella's zoo
(runtime/compute/model_zoo.cc) layer for layer, the IDX reader, the sharded
sampler and the optimizer built from a manifest."""

import gzip
import os
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import pytorch_ddp as pd  # noqa: E402


class ModelTest(unittest.TestCase):
    def shapes(self, model):
        return [tuple(p.shape) for p in model.parameters()]

    def test_cnn_matches_the_zoo(self):
        m = pd.build_model("cnn", 0, 28, 28, 10, 1)
        # Conv(1,16,5) Conv(16,32,5) Linear(32*4*4, 64) Linear(64, 10): 46,730 parameters.
        self.assertEqual(self.shapes(m), [(16, 1, 5, 5), (16,), (32, 16, 5, 5), (32,), (64, 512), (64,),
                                          (10, 64), (10,)])
        self.assertEqual(sum(p.numel() for p in m.parameters()), 46730)
        self.assertEqual(tuple(m(torch.zeros(3, 1, 28, 28)).shape), (3, 10))
        self.assertEqual(self.shapes(pd.build_model("cnn", 128, 28, 28, 10, 1))[4], (128, 512))

    def test_mlp_matches_the_zoo(self):
        m = pd.build_model("mlp", 0, 28, 28, 10, 1)
        self.assertEqual(self.shapes(m), [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)])
        self.assertEqual(self.shapes(pd.build_model("mlp", 100, 28, 28, 10, 1))[2], (50, 100))

    def test_seed_fixes_the_initial_parameters(self):
        a = pd.build_model("cnn", 0, 28, 28, 10, 7)
        b = pd.build_model("cnn", 0, 28, 28, 10, 7)
        self.assertEqual(pd.parameter_checksum(a), pd.parameter_checksum(b))
        self.assertNotEqual(pd.parameter_checksum(a), pd.parameter_checksum(pd.build_model("cnn", 0, 28, 28, 10, 8)))

    def test_unknown_model_and_small_images_are_errors(self):
        with self.assertRaises(ValueError):
            pd.build_model("resnet", 0, 28, 28, 10, 1)
        with self.assertRaises(ValueError):
            pd.build_model("cnn", 0, 8, 8, 10, 1)


class DataTest(unittest.TestCase):
    def test_idx_files_are_read_and_normalised(self):
        with tempfile.TemporaryDirectory() as d:
            pixels = np.array([0, 255] * 8 * 14 * 14, dtype=np.uint8)[:2 * 14 * 14]
            with gzip.open(os.path.join(d, "t10k-images-idx3-ubyte.gz"), "wb") as f:
                f.write(struct.pack(">IIII", 2051, 2, 14, 14) + pixels.tobytes())
            with gzip.open(os.path.join(d, "t10k-labels-idx1-ubyte.gz"), "wb") as f:
                f.write(struct.pack(">II", 2049, 2) + bytes([3, 9]))
            x, y = pd.load_split(d, "t10k")
            self.assertEqual(tuple(x.shape), (2, 1, 14, 14))
            self.assertEqual(y.tolist(), [3, 9])
            self.assertAlmostEqual(x[0, 0, 0, 0].item(), (0 - 0.2860) / 0.3530, places=5)
            self.assertAlmostEqual(x[0, 0, 0, 1].item(), (1 - 0.2860) / 0.3530, places=5)
            with gzip.open(os.path.join(d, "bad.gz"), "wb") as f:
                f.write(struct.pack(">II", 1234, 0))
            with self.assertRaises(ValueError):
                pd.read_idx(os.path.join(d, "bad.gz"), 2049)

    def test_shards_are_disjoint_and_cover_an_epoch(self):
        samplers = [pd.ShardSampler(100, r, 2, seed=1) for r in range(2)]
        a = samplers[0].next(50).tolist()
        b = samplers[1].next(50).tolist()
        self.assertEqual(sorted(a + b), list(range(100)))
        self.assertNotEqual(a, sorted(a))  # shuffled
        # Every epoch reshuffles the whole set (as Stella's BatchSampler does):
        # new shards, still disjoint and covering.
        a2 = samplers[0].next(50).tolist()
        b2 = samplers[1].next(50).tolist()
        self.assertEqual(sorted(a2 + b2), list(range(100)))
        self.assertNotEqual(a2, a)


class OptimizerTest(unittest.TestCase):
    def test_manifest_optimizers(self):
        params = [torch.nn.Parameter(torch.zeros(3))]
        adam = pd.make_optimizer({"optimizer": {"name": "adam", "learningRate": 0.002}}, params)
        self.assertIsInstance(adam, torch.optim.Adam)
        self.assertEqual(adam.defaults["lr"], 0.002)
        sgd = pd.make_optimizer({"optimizer": {"name": "sgd", "learningRate": 0.1, "momentum": 0.5,
                                               "nesterov": True}}, params)
        self.assertIsInstance(sgd, torch.optim.SGD)
        self.assertEqual((sgd.defaults["momentum"], sgd.defaults["nesterov"]), (0.5, True))
        self.assertIsInstance(pd.make_optimizer({"optimizer": {"name": "adamw"}}, params), torch.optim.AdamW)
        with self.assertRaises(ValueError):
            pd.make_optimizer({"optimizer": {"name": "lamb"}}, params)


if __name__ == "__main__":
    unittest.main()
