#!/usr/bin/env bash
# The main job: installs what is missing, builds npvdb, starts the server on
# its defaults (127.0.0.1:50051, data in ./npvdb-data), loads a generated
# clustered dataset through the `npvdb` CLI, prints a few answers and the
# recall / speed table, then keeps serving until Ctrl-C.
#
#   NPVDB_DEMO_N=200000 NPVDB_DEMO_DIM=128  bigger dataset (default 50000 x 64)
#   NPVDB_DEMO_EXIT=1                        stop the server when done
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${NPVDB_DEMO_N:-50000}
DIM=${NPVDB_DEMO_DIM:-64}
Q=${NPVDB_DEMO_Q:-1000}
ADDR=127.0.0.1:50051
BUILD=$ROOT/build
DATA=$BUILD/demo/clustered-$N-$DIM-angular.hdf5

./scripts/install-deps.sh
echo "== build"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target npvdb-server npvdb >/dev/null
SERVER=$BUILD/server/npvdb-server
CLI=$BUILD/client-c/npvdb

if [ ! -f "$DATA" ]; then
  echo "== generating $N x $DIM clustered vectors + $Q queries with exact neighbours"
  mkdir -p "$(dirname "$DATA")"
  /usr/bin/python3 bench/gen_dataset.py --n "$N" --q "$Q" --dim "$DIM" \
    --metric angular --out "$DATA"
fi

if "$CLI" --server "$ADDR" health >/dev/null 2>&1; then
  echo "npvdb-demo: something already serves $ADDR; stop it first" >&2
  exit 1
fi
echo "== starting npvdb-server on $ADDR (data dir ./npvdb-data)"
"$SERVER" --listen "$ADDR" --data-dir ./npvdb-data &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  "$CLI" --server "$ADDR" health >/dev/null 2>&1 && break
  kill -0 $PID 2>/dev/null || { echo "npvdb-demo: server exited" >&2; exit 1; }
  sleep 0.1
done

echo "== load"
"$CLI" --server "$ADDR" load "$DATA" --replace
"$CLI" --server "$ADDR" info
echo "== a few answers (key = train row)"
"$CLI" --server "$ADDR" query "$DATA" --k 5 --n 3
echo "== recall and speed through gRPC"
"$CLI" --server "$ADDR" bench "$DATA" --nprobe 1,2,4,8,16,32
"$CLI" --server "$ADDR" snapshot

if [ "${NPVDB_DEMO_EXIT:-0}" = 1 ]; then
  exit 0
fi
echo "== npvdb-server keeps serving on $ADDR (pid $PID); Ctrl-C stops it"
wait $PID
