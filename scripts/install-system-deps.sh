#!/usr/bin/env bash
# System packages the test suite needs beyond the virtualenv, installed only when missing:
#   prometheus  a real Prometheus server (Debian's package) for tests/test_prometheus_*.py
#   chromium, chromium-driver  a real headless browser for tests/test_ui_browser.py
# Idempotent and quiet when everything is there; `apt-get update` only when the package
# lists are missing or do not know a package. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(prometheus chromium chromium-driver)      # Debian package names
COMMANDS=(prometheus chromium chromedriver)        # a command each package provides, to tell whether it is there

missing=()
for i in "${!PACKAGES[@]}"; do
    command -v "${COMMANDS[$i]}" >/dev/null 2>&1 || missing+=("${PACKAGES[$i]}")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: need ${missing[*]} but apt-get is not available; install them by hand" >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "install-system-deps: need ${missing[*]}: run as root (or install sudo)" >&2
        exit 1
    }
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

known() {  # does apt know a candidate version of every missing package?
    local pkg
    for pkg in "${missing[@]}"; do
        apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]' || return 1
    done
}

echo "install-system-deps: installing ${missing[*]}" >&2
if ! known; then
    "${SUDO[@]}" apt-get update -qq
fi

# Keep packages from starting their daemons (Debian's prometheus would take port 9090,
# the gateway's metrics port): a temporary policy-rc.d refuses service starts.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    created_policy=1
fi
cleanup() { [ "$created_policy" -eq 1 ] && "${SUDO[@]}" rm -f "$policy"; return 0; }
trap cleanup EXIT

"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

for i in "${!PACKAGES[@]}"; do
    command -v "${COMMANDS[$i]}" >/dev/null 2>&1 || {
        echo "install-system-deps: ${PACKAGES[$i]} installed but ${COMMANDS[$i]} is not on PATH" >&2
        exit 1
    }
done
echo "install-system-deps: done" >&2
