#!/usr/bin/env bash
# Micro-benchmark of every signer against the Bearer strategy, measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p latchkey-core --example signers
