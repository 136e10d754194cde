#!/bin/bash
# Device cycle for the cuda engine (issue 14) and the CUDA-enabled UCX (issue 20). Carry
# build-gpu/nodecarry (tests/device/make_nodecarry.sh; it holds ucx-cuda/ when deploy/build-ucx-cuda.sh ran).
#   STEPS="ucx test check prefix serve pd bench" (default: all but ucx), BENCH_PROMPTS, BENCH_HITS,
#   BENCH_ARGS, PD_PROMPTS, UCX_SIZES.
# Logs go to $OUT; the bench's tables are printed last. Exits 1 when any step failed.
D=$(cd "${NODECARRY:-build-gpu/nodecarry}" && pwd)
R=$(pwd)
STEPS=${STEPS:-"test check prefix serve pd bench"}
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
# Use the device's libstdc++ unless it is older than Debian 12's (GLIBCXX_3.4.30).
if ! strings $(ldconfig -p | awk '/libstdc\+\+\.so\.6 /{print $NF; exit}') 2>/dev/null | grep -q GLIBCXX_3.4.30; then
  echo "device libstdc++ too old: using the carried one"; EXTRA=$D/libstd:
fi
# cuBLAS and cudart 13 from the image (the CUDA toolkit, else the pip wheels beside torch).
CULIBS=""
for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $(python3 - <<'PY' 2>/dev/null
import glob, site
for s in site.getsitepackages():
    for d in glob.glob(s + '/nvidia/*/lib'): print(d)
PY
); do
  ls $dir/libcublas.so.13 >/dev/null 2>&1 && CULIBS=$CULIBS:$dir
  ls $dir/libcudart.so.13 >/dev/null 2>&1 && CULIBS=$CULIBS:$dir
done
echo "CUDA libraries from: $CULIBS"
export LD_LIBRARY_PATH=${EXTRA}$D/lib${CULIBS}:$LD_LIBRARY_PATH UCX_MODULE_DIR=$D/ucx
ldd $D/bin/kvstash-node-cuda-check | grep -E "not found|cublas|cudart"
W=/tmp/nodework; mkdir -p $W
# Each step's exit status counts: the cycle fails when any step does (a check, not a log to read).
failed=()
check() { [[ $2 == 0 ]] || failed+=("$1(exit $2)"); }
case " $STEPS " in *" ucx "*)
  echo "== UCX 1.13.1 built with CUDA (deploy/build-ucx-cuda.sh): transports, device-memory bandwidth, cudaMemcpy beside it"
  timeout ${UCX_TIMEOUT:-240} bash $R/tests/device/ucx_cuda_step.sh $D "${UCX_SIZES:-1048576 4194304 16777216}" > $OUT/ucx.log 2>&1
  check ucx $?
  cat $OUT/ucx.log
esac
case " $STEPS " in *" test "*)
  echo "== node_cuda_engine_test"
  timeout ${TEST_TIMEOUT:-300} $D/bin/node_cuda_engine_test > $OUT/node_cuda_engine_test.log 2>&1
  check test $?
  grep -E "^\[  |Failure|Expected|Which is|relative error|Skipped" $OUT/node_cuda_engine_test.log | head -40
esac
case " $STEPS " in *" check "*)
  echo "== logits vs transformers"
  PYTHONUNBUFFERED=1 timeout ${CHECK_TIMEOUT:-300} python3 $R/tests/device/node_cuda_check.py $D/bin $W > $OUT/node_cuda_check.log 2>&1
  check check $?
  grep -vE "Warning|warn|^\s*$" $OUT/node_cuda_check.log | tail -12
esac
case " $STEPS " in *" prefix "*)
  echo "== cached-prefix replay (1B-shaped, 4 layers)"
  cat > $W/mid.json <<'JSON'
{"hidden_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 8192,
 "vocab_size": 32000, "max_position_embeddings": 8192, "torch_dtype": "bfloat16", "rope_theta": 500000.0}
JSON
  $D/bin/kvstash-node make-model --config $W/mid.json --seed 3 --out $W/mid > /dev/null
  TOK=$(python3 -c 'import random; r=random.Random(1); print(",".join(str(r.randrange(32000)) for _ in range(3000)))')
  timeout ${PREFIX_TIMEOUT:-120} $D/bin/kvstash-node-cuda-check --model $W/mid --tokens $TOK --chunk 1024 --prefix-tokens 2048 --greedy 32 > $OUT/prefix.log 2>&1
  check prefix $?
  tail -4 $OUT/prefix.log
esac
case " $STEPS " in *" serve "*)
  echo "== kvstash-node serve --engine cuda: two nodes on one kvstashd"
  timeout ${SERVE_TIMEOUT:-120} bash $R/tests/device/node_serve_cuda.sh $D $W > $OUT/serve.log 2>&1
  check serve $?
  tail -8 $OUT/serve.log
esac
case " $STEPS " in *" pd "*)
  echo "== P/D on one GPU: a prefill and a decode cuda node, the front door, layer-wise vs after-prefill handoff"
  cat > $W/pd.json <<'JSON'
{"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 8192,
 "vocab_size": 32000, "max_position_embeddings": 32768, "torch_dtype": "bfloat16", "rope_theta": 500000.0}
JSON
  $D/bin/kvstash-node make-model --config $W/pd.json --seed 4 --out $W/pd > /dev/null
  timeout ${PD_TIMEOUT:-300} python3 $R/bench/pd_handoff_bench.py unused --bin-dir $D/bin --engine cuda --model $W/pd \
    --prompts ${PD_PROMPTS:-8192,16384} --reps 2 --layer-group 2 --max-tokens 8 > $OUT/pd.log 2>&1
  check pd $?
  tail -12 $OUT/pd.log
esac
case " $STEPS " in *" bench "*)
  echo "== kvstash-bench-node --engine cuda"
  timeout ${BENCH_TIMEOUT:-420} $D/bin/kvstash-bench-node --engine cuda --kvstashd $D/bin/kvstashd --hidden 2048 --layers 16 \
    --heads 32 --kv-heads 8 --intermediate 8192 --vocab 32000 --dram-capacity 4GiB --check-tokens 8 \
    --prompt-tokens ${BENCH_PROMPTS:-1024,2048,4096,8192,16384,32768} --hit-percent ${BENCH_HITS:-0,50,90} ${BENCH_ARGS:-} \
    > $OUT/bench.log 2>&1
  check bench $?
  cat $OUT/bench.log
esac
if ((${#failed[@]} > 0)); then
  echo "node cycle: FAILED: ${failed[*]} (logs in $OUT)"
  exit 1
fi
echo "node cycle: every step passed ($STEPS)"
