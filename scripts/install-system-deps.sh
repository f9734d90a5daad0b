#!/bin/sh
# System packages the test suite needs beyond the Python venv: Debian's chromium and its
# matching chromedriver, for the browser test of the HTML report and the live dashboard
# (tests/dashboard/test_browser.py). Idempotent: installs only what is missing, so `make test`
# can run it every time. Exits non-zero, loudly, when it cannot install them.
set -eu

# fonts-liberation is only a Recommends of chromium; without a font the screenshots lose text.
PACKAGES="chromium chromium-driver fonts-liberation docker-compose"
missing=""
# docker-compose (v1, Debian) validates docker/docker-compose.yml in tests/docker (no engine needed).
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
if command -v dpkg-query >/dev/null 2>&1 && ! dpkg-query -W -f='${Status}' fonts-liberation 2>/dev/null \
        | grep -q "ok installed"; then
    missing="$missing fonts-liberation"
fi

if [ -z "$missing" ]; then
    exit 0
fi

echo "install-system-deps: installing$missing (for the browser tests)" >&2
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: ERROR: apt-get not found; install $PACKAGES (Debian/Ubuntu packages)" \
         "or set FLSIM_CHROMIUM / FLSIM_CHROMEDRIVER to a matching chromium and chromedriver." >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-system-deps: ERROR: not root and no sudo; run as root: apt-get install -y$missing" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $missing; }; then
    echo "install-system-deps: ERROR: apt-get install$missing failed; the browser test will fail." >&2
    exit 1
fi
chromium --version >/dev/null 2>&1 || { echo "install-system-deps: ERROR: chromium does not start" >&2; exit 1; }
chromedriver --version >/dev/null 2>&1 || { echo "install-system-deps: ERROR: chromedriver does not start" >&2; exit 1; }
echo "install-system-deps: $(chromium --version 2>/dev/null); $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2)" >&2
