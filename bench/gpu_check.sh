#!/usr/bin/env bash
# The GPU check: tfjit's CUDA backend on a machine with an NVIDIA GPU, in one run of under
# 8 minutes, with no network. It needs a python3 that already has numba, numba-cuda, numpy,
# pytest and hypothesis (jax and torch with CUDA for the peers; TensorFlow is not needed).
#
#   bench/gpu_check.sh              # or: make gpu-check
#   bench/gpu_check.sh --dry-run    # print the stages and their commands, run nothing
#   bench/gpu_check.sh --simulate   # the same stages on numba's CUDA simulator, tiny sizes
#                                   # (checks the script itself on a machine without a GPU)
#
# Stages, each under its own time limit (`timeout`), each run even when an earlier one failed:
#   setup  versions, nvidia-smi, tfjit importable from this checkout (PYTHONPATH; nothing installed)
#   tests  tests/cuda_cases.py on the GPU (simulator off)
#   bench  `tfjit bench --device gpu`: tfjit against JAX and PyTorch on the GPU
#   bench-compiled  the same for torch.compile (its compiles are slow: a separate time limit)
#   tests-backend  tests/test_numba_cuda.py (simulator child process, PTX for sm_90): CI runs
#          these too, so they come last and get what time is left
# Results go to $OUT (if set) or bench/results/gpu-check-<time>/, seven files: gpu-check.log
# (all output), summary.txt, tests.xml and tests-backend.xml (JUnit), bench.md and bench.json
# (the bench's tables and raw samples), bench-compiled.md; scratch (caches, the bench's
# inputs) stays in a temporary folder. Exit status: 0 when every stage passed, else
# the sum of the failed stages' bits: setup 1, tests and tests-backend 2, bench 4, bench-compiled 8.
set -u

DRY=0
SIM=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        --simulate) SIM=1 ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $arg (try --help)" >&2; exit 64 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
RESULTS=${OUT:-$ROOT/bench/results/gpu-check-$(date -u +%Y%m%d-%H%M%S)}
BUDGET=${GPU_CHECK_BUDGET_S:-465}   # all stages together, seconds (8 min less a margin)
WORKLOADS=${GPU_CHECK_WORKLOADS:-gelu_chain,softmax_rows,layernorm,seed_regression_step,mlp_train_step}
SIZE=${GPU_CHECK_SIZE:-quick}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/tfjit-gpu-check.XXXXXX")
exec > >(tee "$RESULTS/gpu-check.log") 2>&1

# tfjit from this checkout without installing it: a folder holding `tfjit` as the package
# layout pyproject.toml maps (tfjit/, with passes/, backends/ and bench/ inside), by links.
# Python runs from that folder, so the checkout's own tfjit/ (lacking them) never shadows it.
RUN_DIR="$SCRATCH/pythonpath"
make_pythonpath() {
    rm -rf "$RUN_DIR" && mkdir -p "$RUN_DIR/tfjit" || return 1
    for entry in "$ROOT"/tfjit/*; do ln -s "$entry" "$RUN_DIR/tfjit/" || return 1; done
    ln -s "$ROOT/passes" "$RUN_DIR/tfjit/passes" && ln -s "$ROOT/backends" "$RUN_DIR/tfjit/backends" &&
        ln -s "$ROOT/bench" "$RUN_DIR/tfjit/bench"
}

export PYTHONPATH="$RUN_DIR${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # JAX takes GPU memory as it needs it, not 75% at start
export TFJIT_CACHE_DIR="$SCRATCH/tfjit-cache" NUMBA_CACHE_DIR="$SCRATCH/numba-cache"
REPEAT=10
if (( SIM )); then  # the simulator runs each GPU thread as Python: the smallest sizes, few calls
    export NUMBA_ENABLE_CUDASIM=1
    SIZE=tiny
    WORKLOADS=${GPU_CHECK_WORKLOADS:-seed_regression_step}
    REPEAT=2
else
    unset NUMBA_ENABLE_CUDASIM
fi

START=$SECONDS
FAILED=0
: > "$RESULTS/summary.txt"

record() {  # record STAGE STATUS
    printf '%-16s %s\n' "$1" "$2" | tee -a "$RESULTS/summary.txt"
}

stage() {  # stage BIT NAME LIMIT_S COMMAND...: run COMMAND from $RUN_DIR under a time limit
    local bit=$1 name=$2 limit=$3
    shift 3
    local left=$(( BUDGET - (SECONDS - START) ))
    (( limit > left )) && limit=$left
    echo
    echo "=== $name (limit ${limit}s): $*"
    if (( DRY )); then
        record "$name" "dry run"
        return 0
    fi
    if (( limit < 15 )); then
        record "$name" "FAILED: not run, the time budget is spent"
        FAILED=$(( FAILED | bit ))
        return 1
    fi
    local began=$SECONDS rc
    (cd "$RUN_DIR" && timeout --kill-after=15 "$limit" "$@") 2>&1
    rc=$?
    if (( rc == 0 )); then
        record "$name" "passed ($(( SECONDS - began ))s)"
    else
        local why="exit status $rc"
        (( rc == 124 || rc == 137 )) && why="timed out after ${limit}s"
        record "$name" "FAILED: $why ($(( SECONDS - began ))s; its output is in gpu-check.log)"
        FAILED=$(( FAILED | bit ))
    fi
    return "$rc"
}

setup() {
    echo "python: $(command -v "$PY")"
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi || true
    else
        echo "nvidia-smi: not found"
    fi
    "$PY" - <<'EOF'
import importlib, os, platform, sys
print("python", platform.python_version(), "on", platform.platform())
for name in ("numpy", "numba", "numba_cuda", "llvmlite", "scipy", "jax", "jaxlib", "torch", "pytest", "xdist", "hypothesis"):
    try:
        module = importlib.import_module(name)
        print(f"{name:12s} {getattr(module, '__version__', '?')}")
    except Exception as e:  # a missing peer is reported, not fatal: the bench marks it absent
        print(f"{name:12s} missing ({type(e).__name__}: {e})")
import tfjit
import tfjit.backends.numba_cuda as backend
from numba import cuda
from tfjit.backends.numba_cuda.compile import device_target
print("tfjit", tfjit.__version__, "from", os.path.dirname(tfjit.__file__))
print("CUDA simulator:", os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1")
if not cuda.is_available():
    sys.exit("numba.cuda.is_available() is False: no usable CUDA GPU/driver for numba-cuda")
cuda.detect()
print("kernels compile for:", device_target())
try:
    import torch
    print("torch sees CUDA:", torch.cuda.is_available())
    import jax
    print("jax devices:", jax.devices())
except Exception as e:
    print("peer check:", type(e).__name__, e)
EOF
}

echo "tfjit GPU check: $ROOT -> $RESULTS (budget ${BUDGET}s$( (( SIM )) && echo ', CUDA simulator'))"
if (( DRY )); then
    echo "(dry run: PYTHONPATH folder $RUN_DIR would link $ROOT/tfjit, passes, backends, bench)"
elif ! make_pythonpath; then
    record "pythonpath" "FAILED: could not link tfjit into $RUN_DIR"
    exit 1
fi

export -f setup
export PY
stage 1 setup 90 bash -c setup

# On the device (the GPU; the simulator with --simulate): kernels, placement, copies, programs.
# -p no:cacheprovider: the checkout may be read-only; the junit XML lists every test's outcome.
stage 2 tests 150 "$PY" -m pytest -q -rs -p no:cacheprovider --junitxml "$RESULTS/tests.xml" \
    "$ROOT/tests/cuda_cases.py"
# --quick: one process per system (not per workload); the sizes are --size's. Each process
# gets --timeout seconds, so a slow system is cut off by the bench itself (which still
# writes its tables) before the stage's own limit.
BENCH=("$PY" -m tfjit bench --quick --device gpu --size "$SIZE" --workloads "$WORKLOADS"
       --repeat "$REPEAT" --warmup 2)
stage 4 bench 230 "${BENCH[@]}" --timeout 50 --systems tfjit_session,tfjit_function,jax,torch --out "$SCRATCH/bench"
stage 8 bench-compiled 90 "${BENCH[@]}" --timeout 70 --systems torch_compile --out "$SCRATCH/bench-compiled"

# The backend's own tests (simulator child process, PTX for sm_90, no-GPU placement): never
# under the simulator themselves (it has no compiler).
stage 2 tests-backend 120 env -u NUMBA_ENABLE_CUDASIM "$PY" -m pytest -q -rs -p no:cacheprovider \
    --junitxml "$RESULTS/tests-backend.xml" "$ROOT/tests/test_numba_cuda.py"

echo
echo "=== summary ($(( SECONDS - START ))s; exit status $FAILED: setup 1, tests 2, bench 4, bench-compiled 8)"
cat "$RESULTS/summary.txt"
for run in bench bench-compiled; do
    for table in "$SCRATCH/$run"/*/results.md; do
        [[ -f "$table" ]] || continue
        cp "$table" "$RESULTS/$run.md" && echo && echo "--- $run" && sed -n '1,40p' "$table"
    done
done
for raw in "$SCRATCH"/bench/*/results.json; do
    [[ -f "$raw" ]] && cp "$raw" "$RESULTS/bench.json"
done
rm -rf "$SCRATCH"
exit "$FAILED"
