#!/usr/bin/env bash
# The inside of the desktop real-window test; scripts/test-desktop runs it as
#   xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- bash tests/desktop/in-session.sh
# with HOME pointing at a throwaway directory. Unlocks a fresh gnome-keyring (Secret Service),
# starts a tray host (trayer) and tauri-driver, runs app.test.mjs, and stops what it started
# by PID.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${TAURI_DRIVER:?}" "${WEBDRIVER_PORT:?}" "${WEBDRIVER_NATIVE_PORT:?}"

export NO_AT_BRIDGE=1
# A new login keyring with password "pw", unlocked; without it the Secret Service answers
# NoStorageAccess.
eval "$(printf pw | gnome-keyring-daemon --unlock --components=secrets | sed 's/^/export /')"

pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
}
trap cleanup EXIT

# An XEmbed tray host, so the tray icon exists on the display and xdotool can click it.
trayer --edge bottom --align right --widthtype pixel --width 200 --heighttype pixel --height 32 \
    >"$HOME/trayer.log" 2>&1 &
pids+=($!)
"$TAURI_DRIVER" --port "$WEBDRIVER_PORT" --native-port "$WEBDRIVER_NATIVE_PORT" \
    >"$HOME/tauri-driver.log" 2>&1 &
pids+=($!)

export WEBDRIVER_URL="http://127.0.0.1:$WEBDRIVER_PORT"
node --test --test-reporter=spec --test-timeout=120000 "$HERE/app.test.mjs"
