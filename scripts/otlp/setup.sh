#!/usr/bin/env bash
# Makes, once, the Python venv that receiver.py runs in: opentelemetry-proto (the generated OTLP message
# classes) and protobuf, pinned, from PyPI, for Debian's /usr/bin/python3 (not a pyenv or venv python3
# first on PATH: the venv must outlive them). Idempotent; safe to run from two tests at once (flock).
#
#   py=$(scripts/otlp/setup.sh | tail -1)      # the venv's python; progress goes to stderr
#   "$py" scripts/otlp/receiver.py --port 0 --out points.jsonl
#
# The venv is $MEETPUNT_OTLP_CACHE/venv-otlp-<12 hex of the sha256 of REQUIREMENTS> (default
# /var/cache/meetpunt), so changing a pin makes a new venv beside the old one instead of changing it.
# It is made again when unfinished (no .complete) or when it no longer imports the message classes.
source "$(dirname "$0")/../lib.sh"

# opentelemetry-proto 1.45.2 asks for protobuf >=5.0,<8.0 and Python >=3.10; its generated code is from
# protoc 5.26.1. protobuf 6.33.6: the last of the 6 line (7 is a new major), a cp39-abi3 wheel for 3.11.
REQUIREMENTS="opentelemetry-proto==1.45.2
protobuf==6.33.6"
PYTHON=/usr/bin/python3
CACHE=${MEETPUNT_OTLP_CACHE:-/var/cache/meetpunt}

hash=$(printf '%s\n' "$REQUIREMENTS" | sha256sum | cut -c1-12)
venv=$CACHE/venv-otlp-$hash
check='from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest'

ready() { [ -f "$venv/.complete" ] && "$venv/bin/python" -c "$check" 2>/dev/null; }

if ! ready; then
    mkdir -p "$CACHE"
    exec 9>"$CACHE/venv-otlp-$hash.lock"
    flock 9
    # Another run may have made it while this one waited for the lock.
    if ! ready; then
        echo "making $venv (PyPI: $(echo $REQUIREMENTS))" >&2
        "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || ensure_packages python3 python3-venv
        rm -rf "$venv"
        "$PYTHON" -m venv "$venv"
        printf '%s\n' "$REQUIREMENTS" > "$venv/requirements.txt"
        # Wheels only: nothing is compiled, and a missing wheel fails here rather than half-building.
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input --only-binary=:all: \
            -r "$venv/requirements.txt" >&2
        "$venv/bin/python" -c "$check" || { echo "the new venv $venv cannot import the OTLP classes" >&2; exit 1; }
        touch "$venv/.complete"
    fi
    exec 9>&-
fi
echo "OTLP receiver venv: $("$venv/bin/python" -c 'import sys; from importlib.metadata import version as v
print("Python", sys.version.split()[0], "opentelemetry-proto", v("opentelemetry-proto"), "protobuf", v("protobuf"))')" >&2
echo "$venv/bin/python"
