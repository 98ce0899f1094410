#!/usr/bin/env bash
# Prints the libFuzzer dictionary for a fuzz target (fuzz_<name> or <name>),
# or nothing when it has none. Targets share dictionaries by input language.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1#fuzz_}
case "$name" in
http_request | http_response | chunked | proxy_headers) dict=http ;;
rules_expr | rules_eval) dict=rules ;;
config | ruleset) dict=config ;;
*) dict=$name ;;
esac
if [ -f "tests/fuzz/$dict.dict" ]; then
  echo "tests/fuzz/$dict.dict"
fi
