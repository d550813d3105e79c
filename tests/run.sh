#!/usr/bin/env bash
# The project's test command: layer/model tests under JAX and PyTorch, then the full suite under TensorFlow.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
KERAS_BACKEND=jax python -m pytest -q -m backend_agnostic tests
KERAS_BACKEND=torch python -m pytest -q -m backend_agnostic tests
KERAS_BACKEND=tensorflow python -m pytest -q tests
