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

# The update test's own signing key: the app trusts it through LLMUX_UPDATE_PUBKEY and asks
# the manifest the test serves on UPDATE_PORT (app.test.mjs signs its packages with it).
UPDATE_DIR="$HOME/update"
mkdir -p "$UPDATE_DIR"
npx --prefix "$HERE/../.." tauri signer generate --ci -p "" -w "$UPDATE_DIR/test.key" >/dev/null || exit 1
UPDATE_PORT="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
export UPDATE_PORT UPDATE_KEY_FILE="$UPDATE_DIR/test.key"
export LLMUX_UPDATE_URL="http://127.0.0.1:$UPDATE_PORT/latest.json"
LLMUX_UPDATE_PUBKEY="$(cat "$UPDATE_DIR/test.key.pub")"
export LLMUX_UPDATE_PUBKEY

# An XEmbed tray host, so the tray icon exists on the display and xdotool can click it.
trayer --edge bottom --align right --widthtype pixel --width 200 --heighttype pixel --height 32 \
    >"$HOME/trayer.log" 2>&1 &
pids+=($!)
"$TAURI_DRIVER" --port "$WEBDRIVER_PORT" --native-port "$WEBDRIVER_NATIVE_PORT" \
    >"$HOME/tauri-driver.log" 2>&1 &
pids+=($!)

export WEBDRIVER_URL="http://127.0.0.1:$WEBDRIVER_PORT"
node --test --test-reporter=spec --test-timeout=120000 "$HERE/app.test.mjs"
