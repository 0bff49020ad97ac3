#!/usr/bin/env bash
# Install the Debian packages given as arguments, only those that are missing.
#
#   scripts/ensure_system_packages.sh chromium nodejs npm redis-server
#
# Idempotent and quiet when everything is there: a package counts as present when dpkg
# has it installed, or when a command of the same name is already on PATH (for example
# an npm that came with a nodesource nodejs package). Otherwise it runs `apt-get update`
# once and `apt-get install -y` for the missing ones, with sudo when not root.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 PACKAGE..." >&2
    exit 2
fi

missing=()
for pkg in "$@"; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        continue
    fi
    if command -v "$pkg" >/dev/null 2>&1; then
        continue
    fi
    missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "$0: missing ${missing[*]} and there is no apt-get; install them yourself" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi

echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
