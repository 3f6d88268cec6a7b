#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (see
# docs/gradescope.md). It installs Python >= 3.11, creates a virtual environment next to the
# grader with the pinned requirements, and creates the unprivileged user the sandbox runs
# student code as.
#
# PyTorch comes from the CPU wheel index: from PyPI, `torch==X` on Linux is the CUDA build
# (several GB of CUDA libraries that an autograder without a GPU never uses, and a much
# slower image build). `pip install -r requirements.txt` afterwards finds `torch==X`
# already satisfied by `X+cpu`.
set -euo pipefail

SOURCE="${AUTOGRADER_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
VENV="${AUTOGRADER_VENV:-$SOURCE/.venv}"
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
export DEBIAN_FRONTEND=noninteractive
cd "$SOURCE"

python_ok() {  # a Python >= 3.11 with a working venv module
  "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

find_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

PYTHON="$(find_python || true)"
if [ -z "$PYTHON" ]; then
  echo "setup.sh: installing Python (needs >= 3.11 with venv)"
  apt-get update
  # Ubuntu 24.04 images: python3 is 3.12. Ubuntu 22.04 images: python3.11 from the archive.
  apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates || true
  PYTHON="$(find_python || true)"
  if [ -z "$PYTHON" ]; then
    apt-get install -y --no-install-recommends python3.11 python3.11-venv
    PYTHON="$(find_python)"
  fi
fi
echo "setup.sh: using $PYTHON ($("$PYTHON" --version))"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
TORCH_REQ="$(grep -E '^torch==' requirements.txt)"
"$VENV/bin/python" -m pip install --quiet --index-url "$TORCH_INDEX" "$TORCH_REQ"
"$VENV/bin/python" -m pip install --quiet -r requirements.txt

# The sandbox runs every worker in bubblewrap's namespaces (grader/sandbox/isolation.py; setpriv
# from util-linux gives it a uid of its own). Where bwrap is missing or cannot create namespaces
# in this container, the grader says so and falls back to the user below.
if ! command -v bwrap >/dev/null 2>&1; then
  apt-get update || true
  apt-get install -y --no-install-recommends bubblewrap util-linux \
    || echo "setup.sh: could not install bubblewrap: workers will run without namespaces"
fi

# The fallback (no bubblewrap) drops the worker that runs student code to this user as root.
useradd --system --no-create-home graderworker || true

# The worker (as graderworker) must be able to read the grader and run the venv's Python.
chmod -R a+rX "$SOURCE"

# Fail the image build now rather than every submission later.
"$VENV/bin/python" -c "import torch, pytest, hypothesis, grader.rubric; grader.rubric.load_rubric(); print('setup.sh: torch', torch.__version__, '- ok')"
