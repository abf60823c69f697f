#!/usr/bin/env bash
# The dashboard's end-to-end tests: headless Chromium (Debian's package,
# never a downloaded browser) driven by playwright-core, against a real
# `beaver run` on 127.0.0.1. Installs what is missing, builds the binary,
# runs the tests within a time bound. Screenshots go to $E2E_OUT (default:
# a new temp dir, printed at the end).
set -euo pipefail
cd "$(dirname "$0")"

# The version `apt-cache policy chromium` offered when the tests were
# written. Debian's security updates replace it in time: then the newest
# is installed, and said so.
CHROMIUM_VERSION='156.0.8078.114-1~deb12u1'
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "e2e: $CHROMIUM is missing; install it as root: apt-get install chromium" >&2
    exit 1
  fi
  apt-get update -qq
  if apt-cache madison chromium | grep -qF "| $CHROMIUM_VERSION |"; then
    want="chromium=$CHROMIUM_VERSION"
  else
    echo "e2e: warning: chromium $CHROMIUM_VERSION is no longer offered; installing $(apt-cache policy chromium | sed -n 's/ *Candidate: //p')" >&2
    want=chromium
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$want" >/dev/null
fi
"$CHROMIUM" --version

npm ci --no-audit --no-fund --loglevel=error
(cd ../.. && cargo build -q -p beaver --bin beaver)
export BEAVER_BIN=${BEAVER_BIN:-$PWD/../../target/debug/beaver}
export E2E_OUT=${E2E_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/beaver-e2e-shots.XXXXXX")}
# Each test has 2 minutes; the whole run 10 (then it is stopped, and the
# servers it started die with it: lib.mjs kills them by PID on exit).
timeout --kill-after=10 600 node --test --test-concurrency=1 --test-timeout=120000 dashboard.test.mjs
echo "e2e: screenshots in $E2E_OUT"
