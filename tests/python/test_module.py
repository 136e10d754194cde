"""The kvstash Python module against a live kvstashd: keys, put/get/lookup in place on numpy arrays
and torch tensors (CPU, and CUDA when present), gather/scatter against a numpy reference."""
import sys
import unittest

import numpy as np

import kvstash
from kvstash_testing import Daemon

try:
    import torch
except ImportError:  # the torch cases skip; numpy cases still run
    torch = None


class ModuleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()
        cls.client = kvstash.Client(cls.daemon.address)

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def test_prefix_hasher_is_deterministic_and_prefix_shaped(self):
        h = kvstash.PrefixHasher("model|vllm-per-layer|fp32|0", block_tokens=4)
        a = h.chain(list(range(10)))
        self.assertEqual(len(a), 2)
        self.assertTrue(all(isinstance(k, bytes) and len(k) == 16 for k in a))
        self.assertEqual(h.chain(np.arange(13, dtype=np.int64))[:2], a)
        self.assertEqual(h.next(None, [0, 1, 2, 3]), a[0])
        self.assertEqual(h.next(a[0], [4, 5, 6, 7]), a[1])
        self.assertNotEqual(kvstash.PrefixHasher("other", 4).chain(list(range(4)))[0], a[0])
        with self.assertRaises(ValueError):
            h.chain([-1, 2, 3, 4])

    def test_numpy_round_trip_in_place(self):
        rng = np.random.default_rng()
        keys = kvstash.PrefixHasher("np-test", 8).chain(rng.integers(0, 50000, size=8 * 3))
        blocks = [rng.standard_normal((2, 8, 16)).astype(np.float32) for _ in keys]
        result = self.client.put(keys, blocks)
        self.assertEqual(result["stored"] + result["existed"], 3)
        self.assertEqual(self.client.lookup(keys), 3)
        out = [np.full_like(b, np.nan) for b in blocks]
        self.assertEqual(self.client.get(keys, out), [True, True, True])
        for a, b in zip(blocks, out):
            self.assertTrue(np.array_equal(a.view(np.uint32), b.view(np.uint32)))
        # A key not stored is a miss and leaves its buffer untouched.
        missing = kvstash.PrefixHasher("np-test", 8).chain([7] * 8)
        buf = np.full(4, 3.0, dtype=np.float32)
        self.assertEqual(self.client.get(missing, [buf]), [False])
        self.assertTrue((buf == 3.0).all())
        self.assertEqual(self.client.remove(keys[2:]), [True])
        self.assertEqual(self.client.lookup(keys), 2)

    def test_rejects_bad_arguments(self):
        keys = kvstash.PrefixHasher("bad", 4).chain(list(range(4)))
        with self.assertRaises(ValueError):
            self.client.put(keys, [])
        with self.assertRaises(ValueError):
            self.client.put([b"short"], [np.zeros(4, np.float32) + 1])
        with self.assertRaises(ValueError):
            self.client.get(keys, [np.ones((4, 4), np.float32)[:, ::2]])  # not contiguous
        ro = np.ones(4, np.float32)
        ro.setflags(write=False)
        with self.assertRaises(ValueError):
            self.client.get(keys, [ro])

    def test_gather_scatter_match_numpy_reference(self):
        rng = np.random.default_rng()
        layers, pages, bs, heads, dim = 3, 10, 4, 2, 8
        for dtype in (np.uint8, np.float16, np.float32):
            caches = [rng.integers(0, 255, size=(2, pages, bs, heads, dim)).astype(dtype) for _ in range(layers)]
            ids = [7, 2, 9]
            blocks = np.full((len(ids), layers, 2, bs, heads, dim), 77, dtype=dtype)
            kvstash.gather(caches, ids, blocks)
            for i, p in enumerate(ids):
                for layer in range(layers):
                    self.assertTrue(np.array_equal(blocks[i, layer], caches[layer][:, p]))
            # Layer-major: one tensor [layers, 2, pages, ...]; scatter into a poisoned cache.
            lm = np.full((layers, 2, pages, bs, heads, dim), 55, dtype=dtype)
            kvstash.scatter(lm, ids, blocks, layout="layer-major")
            for i, p in enumerate(ids):
                self.assertTrue(np.array_equal(lm[:, :, p], blocks[i]))
            untouched = [p for p in range(pages) if p not in ids]
            self.assertTrue((lm[:, :, untouched] == 55).all())
            # A layer range moves only its slice of each block.
            part = np.full_like(blocks, 1)
            kvstash.gather(lm, ids, part, layout="layer-major", layers=(1, 2))
            self.assertTrue(np.array_equal(part[:, 1], blocks[:, 1]))
            self.assertTrue((part[:, 0] == 1).all() and (part[:, 2] == 1).all())
        with self.assertRaises(ValueError):
            kvstash.gather(caches, [pages], np.zeros((1, layers, 2, bs, heads, dim), np.float32))

    @unittest.skipIf(torch is None, "torch is not importable")
    def test_torch_cpu_round_trip(self):
        keys = kvstash.PrefixHasher("torch-cpu", 4).chain(list(range(100, 116)))
        src = [torch.randn(3, 5, dtype=torch.bfloat16) for _ in keys]
        self.client.put(keys, src)
        dst = [torch.full((3, 5), float("nan"), dtype=torch.bfloat16) for _ in keys]
        self.assertEqual(self.client.get(keys, dst), [True] * len(keys))
        for a, b in zip(src, dst):
            self.assertTrue(torch.equal(a.view(torch.int16), b.view(torch.int16)))

    @unittest.skipIf(torch is None or not torch.cuda.is_available() or not kvstash.built_with_cuda,
                     "no CUDA device, or torch/kvstash without CUDA")
    def test_torch_cuda_round_trip_and_gather(self):
        keys = kvstash.PrefixHasher("torch-cuda", 4).chain(list(range(200, 216)))
        src = [torch.randn(64, 32, device="cuda") for _ in keys]
        self.client.put(keys, src)
        dst = [torch.full((64, 32), float("nan"), device="cuda") for _ in keys]
        self.assertEqual(self.client.get(keys, dst), [True] * len(keys))
        for a, b in zip(src, dst):
            self.assertTrue(torch.equal(a, b))
        caches = [torch.randn(2, 9, 4, 2, 8, device="cuda") for _ in range(2)]
        blocks = torch.full((3, 2, 2, 4, 2, 8), float("nan"), device="cuda")
        kvstash.gather(caches, [8, 0, 4], blocks)
        for i, p in enumerate([8, 0, 4]):
            for layer in range(2):
                self.assertTrue(torch.equal(blocks[i, layer], caches[layer][:, p]))


if __name__ == "__main__":
    print(f"kvstash module: built_with_cuda={kvstash.built_with_cuda}, gpu data path={kvstash.gpu_data_path()}")
    sys.exit(0 if unittest.main(exit=False).result.wasSuccessful() else 1)
