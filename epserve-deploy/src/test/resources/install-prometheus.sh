#!/usr/bin/env bash
# Installs Debian's `prometheus` package (prometheus and promtool) for epserve-deploy's monitoring
# tests (PrometheusScrapeTest, AlertRulesTest), when missing. Idempotent: does nothing when both exist.
# The package's service is not started: the tests run their own prometheus on a free port.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "installing prometheus (and promtool) for the monitoring tests..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
