#!/usr/bin/env bash
# Debian 12 packages ssmstream needs to build, test and fuzz. Idempotent; uses sudo when not root.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
PKGS=(build-essential cmake pkg-config git
      libeigen3-dev libfftw3-dev libsndfile1-dev libsamplerate0-dev nlohmann-json3-dev libcli11-dev
      libgtest-dev libgmock-dev libbenchmark-dev
      libxxhash-dev lv2-dev lilv-utils jalv jackd2 sordi
      clang-14 libclang-rt-14-dev
      libboost-dev chromium python3  # ssm-monitor: Boost.Asio/Beast; its web-view test (headless) and test scripts
      libssl-dev openssl curl        # ssm-monitor: TLS (OpenSSL); its TLS test makes a throwaway certificate, fetches https
      portaudio19-dev libjack-jackd2-dev)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "ssmstream: build dependencies present"
