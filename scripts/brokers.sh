#!/usr/bin/env bash
# Test brokers for the real-service tests: builds (once, cached) and starts tansu, a
# Kafka-API broker, on 127.0.0.1:19092 with durable storage (a SQLite file: it keeps its
# topics and offsets through kill -9). Idempotent: skips the build
# when the binary exists and the start when something already listens on the port.
#   OPENEG_BROKERS_DIR   cache directory (default $HOME/.cache/openeg-brokers)
#   scripts/brokers.sh build   only build/cache the binary
set -euo pipefail

dir="${OPENEG_BROKERS_DIR:-$HOME/.cache/openeg-brokers}"
tansu="$dir/bin/tansu"
host=127.0.0.1
port=19092
mkdir -p "$dir"

# A binary without the libsql engine (an older cache) is rebuilt.
if [ ! -x "$tansu" ] || ! "$tansu" --help 2>/dev/null | grep -q libsql; then
  echo "== building tansu 0.6.0 into $dir (one-time, a few minutes)"
  # Without a storage feature the broker accepts and silently discards records; libsql is
  # the durable one (sqlite file), dynostore adds memory:// for throwaway runs.
  CARGO_TARGET_DIR="$dir/target" CARGO_PROFILE_DEV_DEBUG=0 \
    cargo install tansu --version 0.6.0 --locked --debug --features dynostore,libsql \
    --root "$dir" --force
  # Only the binary is cached: the build tree is over 1 GB.
  rm -rf "$dir/target"
fi
[ "${1:-}" = build ] && exit 0

kafka_up() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
if ! kafka_up; then
  echo "== starting tansu on $host:$port (log: $dir/tansu.log)"
  mkdir -p "$dir/tansu-data"
  # Its own session: it outlives the shell (and process group) that started it. The sqlite
  # path must be relative (tansu drops a leading slash), hence the working directory.
  (cd "$dir/tansu-data" && setsid nohup "$tansu" broker \
    --listener-url "tcp://$host:$port" \
    --advertised-listener-url "tcp://$host:$port" \
    --storage-engine sqlite://tansu.db >"$dir/tansu.log" 2>&1 </dev/null &
    echo $! >"$dir/tansu.pid")
  for _ in $(seq 1 60); do kafka_up && break; sleep 0.5; done
fi
kafka_up || { echo "tansu is not listening on $host:$port (see $dir/tansu.log)" >&2; exit 1; }
echo "== Kafka API broker on $host:$port"
