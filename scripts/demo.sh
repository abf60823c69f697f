#!/usr/bin/env bash
# beaver's crash demo: build, start beaver with the demo handler, enqueue
# 1,000 jobs, kill -9 it mid-way, restart it, and show the measured recovery
# time and the final counts (all 1,000 completed or dead). Cleans up after
# itself (temp dir, the server it started), also when interrupted.
#
#   bash scripts/demo.sh
#
# Ports: the server binds 127.0.0.1 port 0 and the script reads the address
# it prints, so it never collides with a beaver already running.
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-1000}
echo "== building (release)"
cargo build --release -q -p beaver
BEAVER=$PWD/target/release/beaver
WORK=$(mktemp -d -t beaver-demo.XXXXXX)
PID=
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -9 "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

start() {
  : >"$WORK/out"
  "$BEAVER" run --data-dir "$WORK/data" --workers 16 --handler demo --demo-ms 20-200 \
    --listen 127.0.0.1:0 --metrics-listen off >"$WORK/out" 2>>"$WORK/log" &
  PID=$!
  for _ in $(seq 1 300); do
    if grep -q '^API ' "$WORK/out"; then break; fi
    if ! kill -0 "$PID" 2>/dev/null; then echo "beaver did not start:"; cat "$WORK/log"; exit 1; fi
    sleep 0.05
  done
  export BEAVER_SERVER
  BEAVER_SERVER=$(awk '/^API /{print $2}' "$WORK/out")
  head -1 "$WORK/out"
}

counts() {
  "$BEAVER" status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); j=d["jobs"]; print(" ".join(f"{k} {v}" for k,v in j.items()))'
}

echo "== starting beaver on $WORK/data"
start
echo "== enqueueing $JOBS jobs"
seq 1 "$JOBS" | sed 's/.*/{"id":"demo-&","payload":{"n":&}}/' >"$WORK/jobs.ndjson"
"$BEAVER" enqueue --file "$WORK/jobs.ndjson" >/dev/null
sleep 2
echo "   before the crash: $(counts)"
echo "== kill -9 $PID (mid-way)"
kill -9 "$PID"; wait "$PID" 2>/dev/null || true; PID=
echo "== restarting"
start
RECOVERY_MS=$("$BEAVER" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["recovery"]["duration_ms"])')
echo "   recovery took ${RECOVERY_MS} ms"
echo "   after the restart: $(counts)"
echo "== waiting for every job to finish"
for _ in $(seq 1 1200); do
  LEFT=$("$BEAVER" status --json | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"]; print(j["pending"]+j["in_flight"])')
  [ "$LEFT" = 0 ] && break
  sleep 0.25
done
FINAL=$(counts)
echo "   final: $FINAL"
TOTAL=$("$BEAVER" status --json | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"]; print(j["completed"]+j["dead"])')
kill -TERM "$PID"; wait "$PID" || { echo "beaver did not stop cleanly"; exit 1; }; PID=
if [ "$TOTAL" = "$JOBS" ]; then
  echo "== all $JOBS jobs completed or dead: nothing acknowledged was lost"
else
  echo "== FAILED: $TOTAL of $JOBS jobs finished"; exit 1
fi
