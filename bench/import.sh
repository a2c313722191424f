#!/usr/bin/env bash
# Throughput of `latchkey connection import` (release build) on SQLite and PostgreSQL, against a
# baseline measured in the same run: the same number of rows written by the store's bulk seeder
# (`list_bench`: multi-row INSERTs of generated literals, one placeholder credential row each,
# no parsing, no checks, no sealing). The ratio is what parsing, checking, sealing with
# AES-256-GCM and batched transactions cost over raw inserts. See BENCHMARKS.md.
#   N=100000 BACKENDS="sqlite postgres" bench/import.sh
# PostgreSQL: LATCHKEY_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test); the
# import runs in a schema of its own, dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-100000}
backends=${BACKENDS:-sqlite postgres}
pg=${LATCHKEY_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
export PGOPTIONS=--client-min-messages=warning   # no NOTICE per dropped table
cargo build --quiet --release -p latchkey -p latchkey-store --bin latchkey --example list_bench
bin=target/release/latchkey
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One API-key connection a line, each with an end user and two tags (as list_bench seeds).
python3 - "$n" > "$work/connections.jsonl" <<'EOF'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({
        "id": f"c{i}", "connector": "bench", "credentials": {"api_key": f"key-{i:08d}"},
        "end_user": {"id": f"user-{i // 3}"},
        "tags": {"org": f"org-{i % 1000}", "plan": ["free", "pro", "team"][i % 3]},
    }))
EOF
mkdir -p "$work/connectors"
cat > "$work/connectors/bench.yaml" <<'EOF'
id: bench
name: Bench
base_url: https://bench.example
auth:
  - type: api_key
    apply: { in: header, name: X-Key }
EOF

seconds() { # seconds COMMAND…: wall time of COMMAND, in seconds
  local start end
  start=$(date +%s.%N)
  "$@" > /dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

echo "| backend | rows | import (s) | rows/s | raw seed (s) | import / raw |"
echo "| --- | --- | --- | --- | --- | --- |"
for backend in $backends; do
  export LATCHKEY_MASTER_KEY
  LATCHKEY_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
  args=(--data-dir "$work/data-$backend" --connectors "$work/connectors")
  if [ "$backend" = postgres ]; then
    schema="import_bench_$$"
    psql -q "$pg" -c "CREATE SCHEMA $schema"
    args+=(--database-url "$pg?options=-c%20search_path%3D$schema")
  fi
  import=$(seconds "$bin" "${args[@]}" connection import "$work/connections.jsonl")
  if [ "$backend" = postgres ]; then psql -q "$pg" -c "DROP SCHEMA $schema CASCADE"; fi
  raw=$(SIZES=$n BACKENDS=$backend ROUNDS=1 target/release/examples/list_bench |
    sed -n 's/^### .* (seeded in \([0-9.]*\) s)$/\1/p')
  printf '| %s | %d | %.1f | %.0f | %.1f | %.1fx |\n' "$backend" "$n" "$import" \
    "$(echo "$n / $import" | bc -l)" "$raw" "$(echo "$import / $raw" | bc -l)"
done
