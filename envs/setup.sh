#!/usr/bin/env bash
# Set up ppcseg in .venv/ (repo root): the pinned lock, the package (editable), and, with --test, the system
# packages the test suite uses (Debian's slurm-wlm and munge for the real one-node Slurm cluster).
# Running it again when nothing changed is a quick no-op (a stamp file records what was installed).
#   bash envs/setup.sh           # pipeline
#   bash envs/setup.sh --test    # pipeline + test tools
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
VENV=.venv
STAMP="$VENV/.ppcseg-setup"
WANT_TEST=0
[[ "${1:-}" == "--test" ]] && WANT_TEST=1

if ! command -v "$PYTHON" >/dev/null; then
    echo "setup: $PYTHON not found; install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv)" >&2
    exit 1
fi

if [[ "$WANT_TEST" == 1 ]] && ! command -v slurmctld >/dev/null; then
    echo "setup: installing slurm-wlm and munge (for the Slurm tests)"
    if [[ $(id -u) == 0 ]]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurm-wlm munge >/dev/null
fi

fingerprint=$(cat envs/requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$fingerprint" ]]; then
    echo "setup: $VENV is up to date"
    exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade "pip>=24"
"$VENV/bin/python" -m pip install -q -r envs/requirements.lock
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
# mmengine pulls in the GUI opencv, which needs libGL; restore the headless binary in the shared cv2/ folder.
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "$(grep '^opencv-python-headless==' envs/requirements.lock)"
"$VENV/bin/python" -m pip check
echo "$fingerprint" > "$STAMP"
echo "setup: done ($VENV)"
