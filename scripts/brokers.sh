#!/usr/bin/env bash
# Test brokers for the real-service tests: builds (once, cached) and starts tansu, a
# Kafka-API broker, on 127.0.0.1:19092 with in-memory storage. Idempotent: skips the build
# when the binary exists and the start when something already listens on the port.
#   OPENEG_BROKERS_DIR   cache directory (default $HOME/.cache/openeg-brokers)
#   scripts/brokers.sh build   only build/cache the binary
set -euo pipefail

dir="${OPENEG_BROKERS_DIR:-$HOME/.cache/openeg-brokers}"
tansu="$dir/bin/tansu"
host=127.0.0.1
port=19092
mkdir -p "$dir"

if [ ! -x "$tansu" ]; then
  echo "== building tansu 0.6.0 into $dir (one-time, a few minutes)"
  # dynostore: without a storage feature the broker accepts and silently discards records.
  CARGO_TARGET_DIR="$dir/target" CARGO_PROFILE_DEV_DEBUG=0 \
    cargo install tansu --version 0.6.0 --locked --debug --features dynostore --root "$dir"
  # Only the binary is cached: the build tree is over 1 GB.
  rm -rf "$dir/target"
fi
[ "${1:-}" = build ] && exit 0

kafka_up() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
if ! kafka_up; then
  echo "== starting tansu on $host:$port (log: $dir/tansu.log)"
  # Its own session: it outlives the shell (and process group) that started it.
  setsid nohup "$tansu" broker \
    --listener-url "tcp://$host:$port" \
    --advertised-listener-url "tcp://$host:$port" \
    --storage-engine memory://tansu/ >"$dir/tansu.log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do kafka_up && break; sleep 0.5; done
fi
kafka_up || { echo "tansu is not listening on $host:$port (see $dir/tansu.log)" >&2; exit 1; }
echo "== Kafka API broker on $host:$port"
