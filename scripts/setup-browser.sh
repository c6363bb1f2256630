#!/usr/bin/env bash
# Install the headless browser the dashboard test renders /dashboard with: Debian's `chromium`
# package (/usr/bin/chromium). Does nothing when it is already there.
#
#   scripts/setup-browser.sh
#
# Needs root and apt-get (Debian or Ubuntu). The integration test `dashboard` runs this script
# when /usr/bin/chromium is missing, so a fresh CI machine installs the browser through the
# project's own setup; where it cannot (not root, no apt-get) the script fails with a message
# saying what to do, and so does the test: a missing browser must not pass as a skipped test.
set -euo pipefail

browser=/usr/bin/chromium
if [ -x "$browser" ]; then
    echo "setup-browser: $browser is installed: $("$browser" --version 2>/dev/null || echo '?')"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-browser: $browser is missing and there is no apt-get here: install Chromium" \
         "yourself (Debian/Ubuntu package 'chromium') so that $browser exists" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup-browser: $browser is missing and installing it needs root: run" \
         "'sudo $0' (it runs: apt-get update && apt-get install -y --no-install-recommends chromium)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium
if [ ! -x "$browser" ]; then
    echo "setup-browser: apt-get installed 'chromium' but $browser is not there" >&2
    exit 1
fi
echo "setup-browser: installed $("$browser" --version 2>/dev/null || echo "$browser")"
