#!/usr/bin/env bash
# Set up everything the nightly profile and the tests need in ./.venv (idempotent; a second run with nothing
# changed takes seconds). The base install alone (`pip install -e .`: the controller, no inference runtime) is in
# README.md's Install section; this script adds the `all` extra (every runtime, PyAV, the emulator's awslambdaric).
#   scripts/install.sh          perfdesk[all]: PyTorch, ONNX Runtime, TensorFlow CPU, PyAV, awslambdaric
#   scripts/install.sh --test   perfdesk[all,test]: also pytest, the moto server, ruff, mypy; via apt the OpenSSH
#                               server, nginx-light, buildah, docker-registry and skopeo
set -euo pipefail
cd "$(dirname "$0")/.."
extras="all"
want_test=0
if [ "${1:-}" = "--test" ]; then extras="all,test"; want_test=1; fi

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "perfdesk needs Python 3.11 or newer" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  command -v apt-get >/dev/null || { echo "install $* with your package manager" >&2; return 1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
    || { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

# python3-venv is a separate package on Debian/Ubuntu
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
  ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  apt_install "python${ver}-venv" || apt_install python3-venv
fi
if [ "$want_test" = 1 ] && [ ! -x /usr/sbin/sshd ]; then
  echo "installing openssh-server (the SSH tests run a real sshd on 127.0.0.1)"
  apt_install openssh-server
fi
if [ "$want_test" = 1 ] && ! command -v nginx >/dev/null; then
  echo "installing nginx-light (the http target's tests measure a trivial nginx endpoint on 127.0.0.1)"
  apt_install nginx-light
fi
if [ "$want_test" = 1 ] && { ! command -v buildah >/dev/null || ! command -v docker-registry >/dev/null || ! command -v skopeo >/dev/null; }; then
  echo "installing buildah, docker-registry and skopeo (the image tests build, push and pull on 127.0.0.1)"
  apt_install buildah docker-registry skopeo
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.perfdesk-installed-$extras"
want=$(cat pyproject.toml scripts/constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing perfdesk[$extras] into .venv (PyTorch, TensorFlow: about 7 GB the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch and torchvision as one consistent pair (see constraints.txt)
  .venv/bin/python -m pip install -q -c scripts/constraints.txt -e ".[$extras]"
  echo "$want" > "$stamp"
fi
