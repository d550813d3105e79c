#!/usr/bin/env bash
# The project's test command: layer/model tests under JAX and PyTorch, the full suite under TensorFlow,
# then the layer/model tests under TensorFlow again with oneDNN off. Tests that race processes, send
# signals at a given moment or wait on time (marker `serial`) run alone; the rest run on two workers
# (pytest-xdist), one test file per worker, so that a module's fixtures are made once. Counts of MACs,
# parameters and kernel shapes (marker `counts`) do not depend on the backend: TensorFlow's phase runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
# JAX runs eagerly op by op on CPU (several times PyTorch's time here): it checks the layers, models and
# records; PyTorch checks every backend-agnostic test, inference and training included.
KERAS_BACKEND=jax python -m pytest -q -n 2 -m "backend_agnostic and not counts" tests/layers tests/models tests/records
KERAS_BACKEND=torch python -m pytest -q -m "backend_agnostic and not counts" tests
KERAS_BACKEND=tensorflow python -m pytest -q -n 2 --dist loadfile -m "not serial" tests
KERAS_BACKEND=tensorflow python -m pytest -q -m serial tests
# TensorFlow's oneDNN kernels change the last bits: the layer/model numerics also pass with them off
# (Eigen's kernels, TensorFlow's default on x86 CPUs without AVX512_VNNI/BF16 or AMX).
TF_ENABLE_ONEDNN_OPTS=0 KERAS_BACKEND=tensorflow python -m pytest -q -m "backend_agnostic and not counts" tests/layers tests/models
