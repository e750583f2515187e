#!/usr/bin/env bash
# Requests per second for GET /health over https with keep-alive: slipwayd's own TLS against
# nginx's, same throwaway certificate, same wrk, alternating rounds. bench/http.sh with TLS=1.
#
#   bench/tls.sh                  DURATION=10 ROUNDS=3 CONNECTIONS=64 THREADS=2
#   SLIPWAYD=build/slipwayd bench/tls.sh
set -euo pipefail
TLS=1 exec "$(dirname "${BASH_SOURCE[0]}")/http.sh" "$@"
