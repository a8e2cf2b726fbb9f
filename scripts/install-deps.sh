#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Dormouse needs, only those missing (apt-get runs only
# when something is). Used by the README's run command and by CI.
#   build:  C toolchain, pkg-config, cmake + libclang (whisper.cpp), Tauri's WebKitGTK stack
#   tests:  python3 + pip (fixtures), espeak-ng and sox (speech fixtures), Xvfb (a display),
#           dbus-daemon (a private bus for the sleep watcher's test)
#   --with-e2e: WebKitGTK's WebDriver; --with-cross: mingw-w64 for the Windows cross-check
set -euo pipefail

packages=(
    build-essential pkg-config cmake libclang-dev file xdg-utils
    libwebkit2gtk-4.1-dev libjavascriptcoregtk-4.1-dev libsoup-3.0-dev libgtk-3-dev
    libayatana-appindicator3-dev librsvg2-dev libssl-dev libxdo-dev
    python3 python3-pip espeak-ng sox libsox-fmt-base libsox-fmt-mp3
    xvfb xauth dbus-daemon
)
for option in "$@"; do
    case "$option" in
        --with-e2e) packages+=(webkit2gtk-driver) ;;
        # the Windows cross-check builds whisper.cpp with mingw-w64 (scripts/cross-check.sh)
        --with-cross) packages+=(gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64) ;;
        *) echo "unknown option $option (--with-e2e, --with-cross)" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi
if ! command -v node >/dev/null 2>&1; then
    echo "Node.js 20 or newer is needed (https://nodejs.org or your distribution's nodejs package)" >&2
    exit 1
fi
