#!/usr/bin/env bash
# Latency of filtered, paged connection lists on SQLite and PostgreSQL at several table sizes,
# against a primary-key lookup of one connection measured in the same run (see BENCHMARKS.md).
#   SIZES="10000 100000 1000000" BACKENDS="sqlite postgres" ROUNDS=50 bench/list.sh
# PostgreSQL: LATCHKEY_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test); each
# size runs in a schema of its own, dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p latchkey-store --example list_bench
