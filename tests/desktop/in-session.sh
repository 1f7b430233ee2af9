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

pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
}
trap cleanup EXIT

secrets_name_owned() {
    dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'
}

# A new login keyring with password "pw", unlocked; without it the Secret Service answers
# NoStorageAccess, or asks a prompter nobody can answer and the test times out. The daemon
# runs in the foreground under our PID, and is ready only once it owns the Secret Service
# name on the bus (asked with NameHasOwner, which does not start a second daemon through
# D-Bus activation) and stores and reads back a probe item. Once in CI the daemon was gone
# before the app asked for it: a D-Bus-activated one took over with no login keyring.
start_keyring() {
    local attempt wait_step
    for attempt in 1 2 3; do
        printf pw | gnome-keyring-daemon --foreground --unlock --components=secrets \
            >"$HOME/keyring.out" 2>"$HOME/keyring.log" &
        local pid=$!
        for wait_step in $(seq 50); do
            secrets_name_owned && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if secrets_name_owned \
            && printf probe | timeout 5 secret-tool store --label=probe service llmux-probe username probe \
            && [ "$(timeout 5 secret-tool lookup service llmux-probe username probe)" = probe ]; then
            timeout 5 secret-tool clear service llmux-probe username probe
            pids+=("$pid")
            return 0
        fi
        echo "gnome-keyring not ready (attempt $attempt, waited $wait_step steps); its log:" >&2
        cat "$HOME/keyring.log" >&2
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        rm -rf "${XDG_DATA_HOME:-$HOME/.local/share}/keyrings"
    done
    return 1
}
start_keyring || { echo "gnome-keyring did not start; the keychain tests cannot run" >&2; exit 1; }

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
