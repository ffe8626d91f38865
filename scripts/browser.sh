#!/usr/bin/env bash
# Installs the headless Chromium the dashboard's browser test uses (Debian's `chromium` package)
# if it is not there yet. Idempotent and quiet; needs root (apt-get).
set -euo pipefail
if command -v chromium >/dev/null; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
