#!/usr/bin/env bash
# Install the real Postfix and Dovecot that tests/mailservers.py runs (Debian 12, as root).
# Idempotent: skips apt when everything is already there. No daemon is started or enabled here:
# the harness runs its own Postfix and Dovecot from config files in a temp dir, on free ports.
set -euo pipefail

need=(postfix dovecot-imapd dovecot-lmtpd)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
command -v openssl >/dev/null || missing+=(openssl)   # self-signed cert for the IMAPS listener

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-mailservers: missing ${missing[*]} and not root on Debian; install them by hand" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Postfix's package asks what kind of mail server this is: answer "No configuration" up front.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "postfix postfix/mailname string localhost" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Where the packages' maintainer scripts started the system-wide daemons (a machine with systemd),
  # stop and disable them: the harness runs its own instances, and nothing may listen on 25/143.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now postfix dovecot >/dev/null 2>&1 || true
  fi
fi

# Mail cannot be stored as root: Dovecot delivers and reads as this unprivileged user.
if ! getent passwd vmail >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-mailservers: user vmail is missing and not root" >&2
    exit 1
  fi
  getent group vmail >/dev/null || groupadd --system vmail
  useradd --system --gid vmail --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin vmail
fi
