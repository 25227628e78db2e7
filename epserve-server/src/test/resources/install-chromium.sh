#!/usr/bin/env bash
# Installs headless Chromium and chromedriver (Debian packages `chromium`, `chromium-driver`) for
# epserve-server's live-view browser test (LiveViewBrowserTest), when they are missing.
# Idempotent: does nothing when /usr/bin/chromium and /usr/bin/chromedriver exist.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "installing chromium and chromium-driver for the live-view browser test..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
