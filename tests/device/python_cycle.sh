#!/bin/bash
# Device cycle 2: build the Python module for the device's Python (3.12) from the carried static
# libraries, then run the Python tests (CUDA tensors) against a carried kvstashd, with and without HBM.
D=$(cd "${DEVCARRY:-build-gpu/devcarry2}" && pwd)
R=$(pwd)
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
printf '#!/bin/bash\nLD_LIBRARY_PATH=%s/lib UCX_MODULE_DIR=%s/ucx exec %s/bin/kvstashd "$@"\n' $D $D $D > $D/bin/kvstashd.sh; chmod +x $D/bin/kvstashd.sh
PY=python3
PYINC=$($PY -c 'import sysconfig;print(sysconfig.get_paths()["include"])')
PYBINC=$($PY -c 'import pybind11;print(pybind11.get_include())')
SUF=$($PY -c 'import sysconfig;print(sysconfig.get_config_var("EXT_SUFFIX"))')
CUDAINC=$(dirname $(dirname $(which nvcc)))/include
echo "python $($PY --version) include=$PYINC pybind11=$PYBINC cuda=$CUDAINC g++=$(g++ -dumpfullversion)"
ls $PYINC/Python.h || echo "NO Python.h"
mkdir -p /tmp/pyk
for f in kvstash_module array_view device_copy paged_copy; do
  g++ -c -O2 -fPIC -fvisibility=hidden -std=c++20 -DFMT_SHARED -DKVSTASH_HAVE_CUDA=1 -DNDEBUG -I$R -I$R/common/include \
    -I$R/client/include -I$D/inc -isystem $PYINC -isystem $PYBINC -isystem $CUDAINC $R/client/python/$f.cc -o /tmp/pyk/$f.o &
done; wait
device_check link_module /tmp/pyk/link.log "" g++ -shared -o /tmp/pyk/kvstash$SUF -Wl,--disable-new-dtags -Wl,-rpath,$D/lib -Wl,--start-group $(D=$D; eval echo $(cat $D/linkargs.txt)) -Wl,--end-group
ls -la /tmp/pyk/
export PYTHONPATH=/tmp/pyk:$R/tests/python KVSTASHD=$D/bin/kvstashd.sh PYTHONUNBUFFERED=1 UCX_MODULE_DIR=$D/ucx
device_check import_module /tmp/pyk/import.log "" $PY -c 'import kvstash, torch; print("module ok", kvstash.built_with_cuda, kvstash.gpu_data_path(), torch.__version__, torch.cuda.is_available())'
device_check test_module $OUT/python_module.log "^test_|^Ran|^OK|FAILED|Error" timeout 200 $PY $R/tests/python/test_module.py -v
device_check test_real_model $OUT/python_real_model.log "" timeout 200 $PY $R/tests/python/test_real_model.py
device_checks_done
