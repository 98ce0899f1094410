#!/usr/bin/env bash
# Makes the demo's self-signed certificate (examples/tls/demo.pem and
# demo.key, for localhost, 127.0.0.1 and demo.example) unless a valid one is
# there already: `make run` serves HTTPS with it. Not for production use.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=examples/tls
CERT=$DIR/demo.pem
KEY=$DIR/demo.key
if [ -s "$CERT" ] && [ -s "$KEY" ] && openssl x509 -in "$CERT" -noout -checkend 86400 >/dev/null 2>&1; then
  exit 0
fi
mkdir -p "$DIR"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
  -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:demo.example" \
  -keyout "$KEY.tmp" -out "$CERT.tmp" 2>/dev/null
chmod 644 "$CERT.tmp"
mv "$KEY.tmp" "$KEY"
mv "$CERT.tmp" "$CERT"
echo "demo-cert: made $CERT (self-signed, 365 days) and $KEY" >&2
