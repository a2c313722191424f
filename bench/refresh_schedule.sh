#!/usr/bin/env bash
# The background refresher under load (release build): N OAuth2 connections on SQLite over
# PROVIDERS in-process token endpoints, their tokens expiring at random within one hour, the
# 5-minute refresh margin and the per-provider pace (RATE, default 10 a second) of a real
# deployment. The hour runs SPEEDUP times faster: window, margin and tick divided by it, pace
# multiplied by it, so the ratios are the real hour's. Reports calls per second per provider
# (peak, mean, peak against the pace), tokens that expired before their refresh, how long before
# expiry refreshes came, and refreshes per minute. See BENCHMARKS.md and docs/health.md.
#   bench/refresh_schedule.sh                     # 10 000 connections, the hour in one minute
#   N=100000 SPEEDUP=6 bench/refresh_schedule.sh  # the recorded run: the hour in ten minutes
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p latchkey-engine --example refresh_schedule
exec "${CARGO_TARGET_DIR:-target}/release/examples/refresh_schedule"
