#!/usr/bin/env bash
# Test brokers for the real-service tests, built once into a cache and started when nothing
# listens on their port:
#   tansu (Kafka API)                        127.0.0.1:19092, durable storage (a SQLite file
#                                            under tansu-data/: it survives kill -9)
#   rocketmq-rust name server + one broker   127.0.0.1:19876 (namesrv), 127.0.0.1:20911 (broker)
#   a second one (rocketmq2)                 127.0.0.1:29876 (namesrv), 127.0.0.1:30911 (broker),
#                                            cluster BackupCluster, broker broker-b
#   moto (S3 API, in memory)                 127.0.0.1:15000 (keys test/test; any region)
# Idempotent: skips a build when the binaries exist and a start when the port answers.
#   OPENEG_BROKERS_DIR          cache directory (default $HOME/.cache/openeg-brokers)
#   scripts/brokers.sh build    only build/cache the binaries
#   scripts/brokers.sh stop     stop what this script started (by PID file, never by name)
#   OPENEG_BROKERS              which brokers (default "kafka rocketmq rocketmq2 s3")
set -euo pipefail

dir="${OPENEG_BROKERS_DIR:-$HOME/.cache/openeg-brokers}"
brokers="${OPENEG_BROKERS:-kafka rocketmq rocketmq2 s3}"
host=127.0.0.1
mkdir -p "$dir"

# --- shared helpers -----------------------------------------------------------------------

up() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

# start NAME CMD...: run CMD in its own session (it outlives the shell and process group that
# started it), logging to $dir/NAME.log, its PID in $dir/NAME.pid.
start() {
  local name=$1
  shift
  setsid nohup "$@" >"$dir/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/$name.pid"
}

# wait_up NAME PORT: up to 30 s for PORT to accept connections.
wait_up() {
  for _ in $(seq 1 60); do up "$2" && return 0; sleep 0.5; done
  echo "$1 is not listening on $host:$2 (see $dir/$1.log)" >&2
  return 1
}

# stop NAME: end the process recorded in $dir/NAME.pid, if it still runs.
stop() {
  local pidfile="$dir/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    echo "== stopping $1 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

if [ "${1:-}" = stop ]; then
  for b in $brokers; do
    case $b in
      kafka) stop tansu ;;
      rocketmq) stop rocketmq-broker; stop rocketmq-namesrv ;;
      rocketmq2) stop rocketmq2-broker; stop rocketmq2-namesrv ;;
      s3) stop moto ;;
    esac
  done
  exit 0
fi

# --- tansu (Kafka API) --------------------------------------------------------------------

tansu="$dir/bin/tansu"
kafka_port=19092

build_tansu() {
  # A binary without the libsql engine (an older cache) is rebuilt.
  [ -x "$tansu" ] && "$tansu" --help 2>/dev/null | grep -q libsql && return 0
  echo "== building tansu 0.6.0 into $dir (one-time, a few minutes)"
  # Without a storage feature the broker accepts and silently discards records; libsql is
  # the durable one (sqlite file), dynostore adds memory:// for throwaway runs.
  CARGO_TARGET_DIR="$dir/target" CARGO_PROFILE_DEV_DEBUG=0 \
    cargo install tansu --version 0.6.0 --locked --debug --features dynostore,libsql \
    --root "$dir" --force
  # Only the binary is cached: the build tree is over 1 GB.
  rm -rf "$dir/target"
}

start_tansu() {
  echo "== starting tansu on $host:$kafka_port (log: $dir/tansu.log)"
  # Test data only: a store grown past 512 MB (benchmarks fill it) makes every request slow
  # on SQLite, so it starts empty again.
  if [ -f "$dir/tansu-data/tansu.db" ] &&
    [ "$(du -m "$dir/tansu-data" | cut -f1)" -gt 512 ]; then
    echo "== tansu's test store is over 512 MB: starting it empty"
    rm -rf "$dir/tansu-data"
  fi
  mkdir -p "$dir/tansu-data"
  # The sqlite path must be relative (tansu drops a leading slash): run it in its data dir.
  run_tansu
  # A new store gets its tables when tansu starts: index them once, with tansu stopped.
  if ! has_header_index "$dir/tansu-data/tansu.db" 2>/dev/null; then
    wait_up tansu $kafka_port
    stop tansu
    echo "== indexing tansu's store (headers by record)"
    add_header_index "$dir/tansu-data/tansu.db"
    run_tansu
  fi
}

run_tansu() {
  start tansu env -C "$dir/tansu-data" "$tansu" broker \
    --listener-url "tcp://$host:$kafka_port" \
    --advertised-listener-url "tcp://$host:$kafka_port" \
    --storage-engine sqlite://tansu.db
}

# tansu 0.6's SQLite schema has no index on `header`. It reads a record's headers with one query
# per record and deletes them by a cascade per record, and each is a scan of every header in the
# store. Measured here: with 448,000 headers in the store (50,000 records of 8), a consumer read 0
# of 3,000 records in 300 s and the broker answered nobody else meanwhile; with the index it read
# them in 1.1 s. The index changes no result, only the query plan. It is added while tansu is
# stopped (the one time it was added under a running tansu, that broker answered nothing after).
# has_header_index / add_header_index DB
has_header_index() {
  python3 - "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=30)
found = db.execute("select 1 from sqlite_master where type = 'index' and name = 'openeg_header_record'").fetchone()
sys.exit(0 if found else 1)
PY
}
add_header_index() {
  python3 - "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=rw", uri=True, timeout=30)
db.execute("create index if not exists openeg_header_record on header (topition, offset_id)")
db.commit()
PY
}

# --- RocketMQ (rocketmq-rust name server + broker) ---------------------------------------

namesrv="$dir/bin/rocketmq-namesrv-rust"
broker="$dir/bin/rocketmq-broker-rust"
namesrv_port=19876
broker_port=20911
rmq_home="$dir/rocketmq"
# The second cluster (event-router job tests copy one cluster into another).
namesrv2_port=29876
broker2_port=30911
rmq2_home="$dir/rocketmq2"

build_rocketmq() {
  [ -x "$namesrv" ] && [ -x "$broker" ] && return 0
  echo "== building rocketmq-rust 1.0.0 (namesrv + broker) into $dir (one-time, ~7 min)"
  # One target dir for both: they share most of their dependency tree.
  for crate in rocketmq-namesrv rocketmq-broker; do
    CARGO_TARGET_DIR="$dir/target-rocketmq" CARGO_PROFILE_DEV_DEBUG=0 \
      cargo install "$crate" --version 1.0.0 --locked --debug --root "$dir"
  done
  # Only the binaries are cached: the build tree is several GB.
  rm -rf "$dir/target-rocketmq"
}

# start_rocketmq HOME NAMESRV_PORT BROKER_PORT CLUSTER BROKER_NAME LOG_PREFIX: one name server
# and one broker (the HA port is BROKER_PORT + 1).
start_rocketmq() {
  local home=$1 ns_port=$2 b_port=$3 cluster=$4 bname=$5 name=$6
  mkdir -p "$home/conf" "$home/store"
  # The broker refuses every send (SYSTEM_BUSY, "store_not_writeable") once the disk holding
  # its store is 90 % used, counting space other programs use: on a shared disk that is full
  # of build trees, that stops the tests. A small tmpfs of its own keeps the ratio its own.
  if ! mountpoint -q "$home/store"; then
    mount -t tmpfs -o size=2g,mode=0700 "openeg-$name" "$home/store" 2>/dev/null ||
      echo "== note: no tmpfs for the RocketMQ store; it refuses sends once its disk is 90 % full"
  fi
  # Small store files: the defaults take 1.5 GB of real disk. Unknown keys are rejected.
  cat >"$home/conf/broker.toml" <<EOF2
[broker]
namesrvAddr = "$host:$ns_port"
brokerIp1 = "$host"
listenPort = $b_port
storePathRootDir = "$home/store"
[broker.brokerServerConfig]
bindAddress = "$host"
[broker.brokerIdentity]
brokerName = "$bname"
brokerClusterName = "$cluster"
brokerId = 0
[store]
storeType = "LocalFile"
brokerRole = "ASYNC_MASTER"
storePathRootDir = "$home/store"
haListenAddress = "$host"
haListenPort = $((b_port + 1))
mappedFileSizeCommitLog = 67108864
mappedFileSizeConsumeQueue = 600000
maxHashSlotNum = 50000
maxIndexNum = 200000
EOF2
  if ! up "$ns_port"; then
    echo "== starting RocketMQ name server on $host:$ns_port (log: $dir/$name-namesrv.log)"
    ROCKETMQ_HOME="$home" start "$name-namesrv" "$namesrv" --rocketmqHome "$home" \
      --bindAddress "$host" --listenPort "$ns_port" \
      --kvConfigPath "$home/kvConfig.json" --log-filter warn
    wait_up "$name-namesrv" "$ns_port"
  fi
  if ! up "$b_port"; then
    echo "== starting RocketMQ broker on $host:$b_port (log: $dir/$name-broker.log)"
    # The insecure profile allows plain remoting on loopback (no TLS material here).
    ROCKETMQ_HOME="$home" ROCKETMQ_SECURITY_PROFILE=development-insecure-loopback \
      start "$name-broker" "$broker" -c "$home/conf/broker.toml" \
      -n "$host:$ns_port" --log-filter warn
    wait_up "$name-broker" "$b_port"
    sleep 1 # the broker registers with the name server ~0.25 s after it listens
  fi
}

# --- S3 (moto's server mode) -------------------------------------------------------------

moto_venv="$dir/moto-venv"
s3_port=15000

build_s3() {
  [ -x "$moto_venv/bin/moto_server" ] && return 0
  echo "== installing moto (an S3 API server) into $moto_venv"
  rm -rf "$moto_venv"
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install -q --disable-pip-version-check 'moto[s3]==5.2.5' flask flask-cors
}

start_s3() {
  if ! up $s3_port; then
    echo "== starting moto (S3) on $host:$s3_port (log: $dir/moto.log)"
    start moto "$moto_venv/bin/moto_server" -H "$host" -p $s3_port
    wait_up moto $s3_port
  fi
}

# --- main -------------------------------------------------------------------------------

for b in $brokers; do
  case $b in
    kafka) build_tansu ;;
    rocketmq | rocketmq2) build_rocketmq ;;
    s3) build_s3 ;;
    *) echo "unknown broker $b (kafka, rocketmq, rocketmq2, s3)" >&2; exit 1 ;;
  esac
done
[ "${1:-}" = build ] && exit 0

for b in $brokers; do
  case $b in
    kafka)
      up $kafka_port || start_tansu
      wait_up tansu $kafka_port
      echo "== Kafka API broker on $host:$kafka_port"
      ;;
    rocketmq)
      if ! up $namesrv_port || ! up $broker_port; then
        start_rocketmq "$rmq_home" $namesrv_port $broker_port DefaultCluster broker-a rocketmq
      fi
      echo "== RocketMQ name server on $host:$namesrv_port, broker on $host:$broker_port"
      ;;
    rocketmq2)
      if ! up $namesrv2_port || ! up $broker2_port; then
        start_rocketmq "$rmq2_home" $namesrv2_port $broker2_port BackupCluster broker-b rocketmq2
      fi
      echo "== RocketMQ (second cluster) name server on $host:$namesrv2_port, broker on $host:$broker2_port"
      ;;
    s3)
      start_s3
      echo "== S3 API (moto) on $host:$s3_port"
      ;;
  esac
done
