"""The kvstash Python module against a live kvstashd: keys, put/get/lookup in place on numpy arrays
and torch tensors (CPU, and CUDA when present), gather/scatter against a numpy reference."""
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
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
        status = cls.daemon.stop()
        if status != 0:
            raise AssertionError(f"kvstashd exited with status {status} instead of stopping cleanly")

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

    def test_eager_put_and_get_by_key_over_tcp(self):
        # UCX over tcp: the two-sided protocol, where puts can skip the reservation round and gets
        # the locate round.
        with Daemon(extra=("--ucx-transports", "tcp")) as daemon:
            client = kvstash.Client(daemon.address, data_path="ucx", ucx_transports="tcp")
            self.assertIn("two-sided", client.data_path)
            rng = np.random.default_rng(5)
            keys = kvstash.PrefixHasher("eager", 8).chain(rng.integers(0, 50000, size=8 * 4))
            blocks = [rng.standard_normal((3, 8, 16)).astype(np.float32) for _ in keys]
            self.assertEqual(client.put(keys, blocks, eager=True, advice="likely")["stored"], 4)
            again = client.put(keys, blocks, eager=True)
            self.assertEqual((again["stored"], again["existed"]), (0, 4))
            out = [np.zeros_like(b) for b in blocks]
            self.assertEqual(client.get(keys, out), [True] * 4)
            for a, b in zip(blocks, out):
                self.assertTrue(np.array_equal(a.view(np.uint32), b.view(np.uint32)))

    def test_put_with_reuse_advice(self):
        keys = kvstash.PrefixHasher("advice", 4).chain(list(range(4 * 3)))
        blocks = [np.arange(64, dtype=np.float32) + i for i in range(3)]
        self.assertEqual(self.client.put(keys, blocks, advice="unlikely")["stored"], 3)
        out = [np.zeros_like(b) for b in blocks]
        self.assertEqual(self.client.get(keys, out), [True] * 3)
        self.assertTrue(all(np.array_equal(a, b) for a, b in zip(blocks, out)))
        other = kvstash.PrefixHasher("advice-bad", 4).chain(list(range(4)))
        with self.assertRaises(ValueError):
            self.client.put(other, [blocks[0]], advice="sometimes")
        self.assertEqual(self.client.lookup(other), 0)

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


class SecurityTest(unittest.TestCase):
    """The module as a TLS client with a bearer token (docs/SECURITY.md)."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="kvstash-py-security-")
        script = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "make-test-certs.sh")
        subprocess.run(["bash", script, cls.dir], check=True, stdout=subprocess.DEVNULL, env=tool_env())
        cls.token = "python-writer-token"
        cls.other_token = "python-other-tenant-token"
        with open(os.path.join(cls.dir, "tokens"), "w") as f:
            f.write(hashlib.sha256(cls.token.encode()).hexdigest() + " team-py write shared=public\n")
            f.write(hashlib.sha256(cls.other_token.encode()).hexdigest() + " team-other write shared=public\n")
        p = lambda name: os.path.join(cls.dir, name)
        cls.daemon = Daemon(extra=("--no-ucx", "--tls-cert", p("server.pem"), "--tls-key", p("server.key"),
                                   "--tls-client-ca", p("ca.pem"), "--tokens-file", p("tokens")))
        cls.tls = dict(tls_ca=p("ca.pem"), tls_cert=p("client.pem"), tls_key=p("client.key"))

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_round_trip_over_tls_with_a_token(self):
        client = kvstash.Client(self.daemon.address, token=self.token, **self.tls)
        keys = kvstash.PrefixHasher("security", 4).chain(list(range(8)))
        blocks = [np.full(64, i, np.float32) for i in range(2)]
        client.put(keys, blocks)
        self.assertEqual(client.lookup(keys), 2)

    def test_shared_namespace_is_shared_by_its_members_only(self):
        keys = kvstash.PrefixHasher("shared-py", 4).chain(list(range(8)))
        writer = kvstash.Client(self.daemon.address, token=self.token, shared_namespace="public", **self.tls)
        writer.put(keys, [np.full(64, i, np.float32) for i in range(2)])
        other = kvstash.Client(self.daemon.address, token=self.other_token, shared_namespace="public", **self.tls)
        self.assertEqual(other.lookup(keys), 2)
        own = kvstash.Client(self.daemon.address, token=self.other_token, **self.tls)
        self.assertEqual(own.lookup(keys), 0)  # outside the namespace the keys are the tenant's own
        with self.assertRaises(Exception):  # a namespace the tenant did not join
            kvstash.Client(self.daemon.address, token=self.token, shared_namespace="private", **self.tls).lookup(keys)

    def test_refused_without_token_or_tls(self):
        with self.assertRaises(Exception):
            kvstash.Client(self.daemon.address, token="wrong", **self.tls)
        with self.assertRaises(Exception):
            kvstash.Client(self.daemon.address, **self.tls)
        with self.assertRaises(Exception):
            kvstash.Client(self.daemon.address, token=self.token)  # plaintext against the TLS port


def tool_env():
    """The environment for third-party tools (bash, openssl, etcd): without the ASan runtime an
    ASan build preloads into this interpreter (tests/CMakeLists.txt), whose leak check would
    report the tools' own allocations."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdTlsTest(unittest.TestCase):
    """The module finds a cluster through a real etcd whose client port speaks only TLS and demands
    a client certificate (etcd --client-cert-auth), as kvstashd and the C++ SDK do."""

    @classmethod
    def setUpClass(cls):
        if shutil.which("etcd") is None:
            raise unittest.SkipTest("no etcd binary")
        cls.dir = tempfile.mkdtemp(prefix="kvstash-py-etcd-")
        script = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "make-test-certs.sh")
        subprocess.run(["bash", script, cls.dir], check=True, stdout=subprocess.DEVNULL, env=tool_env())
        p = lambda name: os.path.join(cls.dir, name)
        cls.endpoint = f"https://127.0.0.1:{free_port()}"
        peer = f"http://127.0.0.1:{free_port()}"
        cls.etcd = subprocess.Popen(
            ["etcd", "--name", "py", "--data-dir", p("etcd"), "--listen-client-urls", cls.endpoint,
             "--advertise-client-urls", cls.endpoint, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", "py=" + peer, "--cert-file", p("server.pem"), "--key-file", p("server.key"),
             "--client-cert-auth", "--trusted-ca-file", p("ca.pem"), "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=tool_env())
        cls.etcd_tls = dict(etcd_ca=p("ca.pem"), etcd_cert=p("client.pem"), etcd_key=p("client.key"))
        # kvstashd registers before its ready line only when etcd answers at its start (else it
        # retries in the background, and a client could find no member): wait for etcd's port.
        port = int(cls.endpoint.rsplit(":", 1)[1])
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if cls.etcd.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"etcd did not listen on {cls.endpoint} (exit status {cls.etcd.poll()})")
                time.sleep(0.05)  # polling a condition with a deadline, not a fixed wait
        cls.daemon = Daemon(standalone=False, extra=(
            "--no-ucx", "--etcd", cls.endpoint, "--cluster", "py", "--etcd-ca", p("ca.pem"),
            "--etcd-cert", p("client.pem"), "--etcd-key", p("client.key")))

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()
        cls.etcd.kill()
        cls.etcd.wait()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_round_trip_through_the_cluster_found_over_tls(self):
        client = kvstash.Client(etcd=[self.endpoint], cluster="py", timeout_ms=10000, **self.etcd_tls)
        keys = kvstash.PrefixHasher("etcd-tls", 4).chain(list(range(12)))
        blocks = [np.full(256, i, np.float32) for i in range(3)]
        client.put(keys, blocks)
        self.assertEqual(client.lookup(keys), 3)
        out = [np.zeros(256, np.float32) for _ in range(3)]
        self.assertEqual(client.get(keys, out), [True, True, True])
        for i, o in enumerate(out):
            np.testing.assert_array_equal(o, blocks[i])

    def test_refused_without_the_etcd_ca_or_client_certificate(self):
        with self.assertRaises(Exception):  # https:// without a CA is refused by name
            kvstash.Client(etcd=[self.endpoint], cluster="py", timeout_ms=3000)
        with self.assertRaises(Exception):  # etcd demands a client certificate
            kvstash.Client(etcd=[self.endpoint], cluster="py", timeout_ms=3000, etcd_ca=self.etcd_tls["etcd_ca"])


class CodecTest(unittest.TestCase):
    """kvstash.BlockCodec through put/get: blocks stored encoded, decoded on the way back exactly as
    the CPU reference decodes them, within the codec's error bound; foreign bytes read as a miss."""
    LAYERS, TOKENS, HEADS, DIM = 2, 16, 4, 64

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()
        cls.client = kvstash.Client(cls.daemon.address)

    @classmethod
    def tearDownClass(cls):
        status = cls.daemon.stop()
        if status != 0:
            raise AssertionError(f"kvstashd exited with status {status} instead of stopping cleanly")

    def codec(self, ns):
        return kvstash.BlockCodec(ns, self.LAYERS, self.TOKENS, self.HEADS, self.DIM)

    def raw_blocks(self, n, dtype, seed):
        rng = np.random.default_rng(seed)
        shape = (self.LAYERS, 2, self.TOKENS, self.HEADS, self.DIM)
        scale = np.exp(rng.normal(0, 0.5, size=(self.LAYERS, 2, 1, self.HEADS, 1)))
        return [(rng.standard_normal(shape) * scale).astype(dtype) for _ in range(n)]

    def check_round_trip(self, ns, blocks, make_out, to_bytes, to_float):
        codec = self.codec(ns)
        self.assertTrue(codec.enabled)
        self.assertLess(codec.encoded_bytes, codec.raw_bytes * 0.55)
        keys = kvstash.PrefixHasher(ns, self.TOKENS).chain(list(range(len(blocks) * self.TOKENS)))
        r = self.client.put(keys, blocks, codec=codec)
        self.assertEqual(r["stored"] + r["existed"], len(keys))
        out = [make_out() for _ in keys]
        self.assertEqual(self.client.get(keys, out, codec=codec), [True] * len(keys))
        enc = np.empty(codec.encoded_bytes, np.uint8)
        worst = 0.0
        for b, o in zip(blocks, out):
            ref = np.empty(codec.raw_bytes, np.uint8)
            codec.encode(to_bytes(b), enc)
            self.assertTrue(codec.decode(enc, ref))
            self.assertTrue(np.array_equal(ref, to_bytes(o)), "decode differs from the CPU reference")
            x, y = to_float(b), to_float(o)
            amax = np.abs(x).max(axis=(2, 4), keepdims=True)  # per (layer, K/V, head) group
            worst = max(worst, float((np.abs(x - y) / amax).max()))
        bound = (0.5 / 127 if codec.name == "int8" else 16 / 448) + 1 / 256
        self.assertLessEqual(worst, bound)
        print(f"codec {ns}: max |err| / group amax = {worst:.4f} (bound {bound:.4f})")
        return keys, codec

    def test_numpy_fp16_fp8_and_int8(self):
        for ns in ("codec-np|vllm-per-layer|fp16:fp8-e4m3|0", "codec-np|vllm-per-layer|fp16:int8|0"):
            blocks = self.raw_blocks(3, np.float16, 5)
            self.check_round_trip(ns, blocks, lambda: np.full_like(blocks[0], np.nan),
                                  lambda a: a.reshape(-1).view(np.uint8), lambda a: a.astype(np.float64))

    def test_foreign_bytes_are_a_miss_and_wrong_sizes_refused(self):
        ns = "codec-bad|vllm-per-layer|fp16:fp8|0"
        codec = self.codec(ns)
        keys = kvstash.PrefixHasher(ns, self.TOKENS).chain(list(range(2 * self.TOKENS)))
        self.client.put(keys, [np.full(codec.encoded_bytes, 0x5A, np.uint8), np.ones(100, np.uint8)])
        out = [np.full(codec.raw_bytes // 2, 7, np.float16) for _ in keys]
        self.assertEqual(self.client.get(keys, out, codec=codec), [False, False])
        self.assertTrue(all((o == 7).all() for o in out))
        with self.assertRaises(kvstash.Error):
            self.client.put(keys, [np.ones(10, np.float16)] * 2, codec=codec)
        with self.assertRaises(ValueError):
            kvstash.BlockCodec("codec|vllm|fp16:zstd|0", 1, 1, 1, 1)
        self.assertFalse(kvstash.BlockCodec("codec|vllm|fp16|0", 1, 1, 1, 1).enabled)

    @unittest.skipIf(torch is None, "torch is not importable")
    def test_torch_bf16_cpu(self):
        blocks = [torch.from_numpy(b.astype(np.float32)).to(torch.bfloat16) for b in self.raw_blocks(2, np.float32, 9)]
        shape = blocks[0].shape
        self.check_round_trip("codec-torch|vllm-per-layer|bf16:fp8-e4m3|0", blocks,
                              lambda: torch.full(shape, float("nan"), dtype=torch.bfloat16),
                              lambda t: t.view(torch.int16).numpy().reshape(-1).view(np.uint8),
                              lambda t: t.float().numpy().astype(np.float64))

    @unittest.skipIf(torch is None or not torch.cuda.is_available() or not kvstash.built_with_cuda,
                     "no CUDA device, or torch/kvstash without CUDA")
    def test_torch_cuda_bf16(self):
        blocks = [torch.from_numpy(b.astype(np.float32)).to(torch.bfloat16).cuda()
                  for b in self.raw_blocks(2, np.float32, 11)]
        shape = blocks[0].shape
        to_bytes = lambda t: t.cpu().view(torch.int16).numpy().reshape(-1).view(np.uint8)
        for ns in ("codec-cuda|vllm-per-layer|bf16:int8|0", "codec-cuda|vllm-per-layer|bf16:fp8-e4m3|0"):
            # CUDA tensors are encoded and decoded on the GPU: decoded bits equal the CPU reference's.
            keys, codec = self.check_round_trip(
                ns, blocks, lambda: torch.full(shape, float("nan"), dtype=torch.bfloat16, device="cuda"),
                to_bytes, lambda t: t.float().cpu().numpy().astype(np.float64))
            # What the GPU stored is the CPU encoder's output, byte for byte.
            stored = [np.zeros(codec.encoded_bytes, np.uint8) for _ in keys]
            self.assertEqual(self.client.get(keys, stored), [True] * len(keys))
            enc = np.empty(codec.encoded_bytes, np.uint8)
            for b, st in zip(blocks, stored):
                codec.encode(to_bytes(b), enc)
                self.assertTrue(np.array_equal(enc, st), "GPU encoding differs from the CPU reference")
            # A mixed get (one block decoded on the CPU, one on the GPU): the CPU reference's bits.
            outs = [torch.full(shape, float("nan"), dtype=torch.bfloat16),
                    torch.full(shape, float("nan"), dtype=torch.bfloat16, device="cuda")]
            self.assertEqual(self.client.get(keys[:2], outs, codec=codec), [True, True])
            for b, o in zip(blocks, outs):
                ref = np.empty(codec.raw_bytes, np.uint8)
                codec.encode(to_bytes(b), enc)
                self.assertTrue(codec.decode(enc, ref))
                self.assertTrue(np.array_equal(ref, to_bytes(o)))
        # Foreign bytes under a key: a miss on the GPU path too, the tensor untouched.
        keys = kvstash.PrefixHasher("codec-cuda-bad|vllm-per-layer|bf16:int8|0", self.TOKENS).chain(
            list(range(self.TOKENS)))
        self.client.put(keys, [np.full(codec.encoded_bytes, 0x5A, np.uint8)])
        out = torch.full(shape, 7.0, dtype=torch.bfloat16, device="cuda")
        self.assertEqual(self.client.get(keys, [out], codec=codec), [False])
        self.assertTrue(bool((out == 7.0).all()))


if __name__ == "__main__":
    print(f"kvstash module: built_with_cuda={kvstash.built_with_cuda}, gpu data path={kvstash.gpu_data_path()}")
    sys.exit(0 if unittest.main(exit=False).result.wasSuccessful() else 1)
