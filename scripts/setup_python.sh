#!/usr/bin/env bash
# Creates scripts/.venv with the Python packages the comparison scripts need, from PyPI.
#   scripts/setup_python.sh            scikit-learn (classical baselines), tensorboard (its reader
#                                      checks cinefuse's event files in the tests)
#   scripts/setup_python.sh --torch    + PyTorch (training-speed comparison) and what the
#                                      reference implementation of exported models reads with
#                                      (safetensors, tokenizers, pillow) and exports to (onnx,
#                                      onnxruntime): scripts/cinefuse_torch.py
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --upgrade pip
"$here/.venv/bin/pip" install --quiet numpy scikit-learn tensorboard
if [ "${1:-}" = "--torch" ]; then
  "$here/.venv/bin/pip" install --quiet torch safetensors tokenizers pillow onnx onnxscript onnxruntime
  "$here/.venv/bin/python" -c "import torch, onnxruntime; print('torch', torch.__version__, '/ onnxruntime', onnxruntime.__version__)"
fi
"$here/.venv/bin/python" -c "import sklearn, tensorboard; print('scikit-learn', sklearn.__version__, '/ tensorboard', tensorboard.__version__)"
