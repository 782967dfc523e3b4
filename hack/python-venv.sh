#!/usr/bin/env bash
# Installs python3 with venv and ensurepip from Debian apt when they are
# missing (engine/fuse TestPythonVenv: a virtualenv created and run on a
# FUSE mount). Needs root for apt-get; otherwise it only says what is
# missing, and the test skips (fails under CI=true).
set -euo pipefail
if command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "python-venv: python3 with venv/ensurepip is missing; install python3-venv (TestPythonVenv skips)" >&2
  exit 0
fi
echo "python-venv: installing python3 python3-venv from apt" >&2
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv) >/dev/null
