#!/usr/bin/env bash
# Runs every test: unit, real netlink on this kernel (veth pairs in network namespaces), real HTTP
# server, real SQLite, real agent and collector processes. Needs root for namespaces.
source "$(dirname "$0")/lib.sh"

phase "installing Debian packages (when missing)"
ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
ensure_swift
[ "$(id -u)" -eq 0 ] || echo "warning: not root: tests that need network namespaces will be skipped" >&2

phase "building (debug, with tests)"
swift build --build-tests

mkdir -p var
phase "the demo, as a new user runs it (acceptance: its summary shows this host's interfaces with traffic)"
DURATION=12 ./scripts/demo.sh 2>&1 | tee var/demo-check.log
if ! grep -qE "rx [1-9][0-9]* packets" var/demo-check.log; then
    echo "FAIL: the demo's summary shows no interface with traffic" >&2
    exit 1
fi

phase "running tests"
swift test --skip-build 2>&1 | tee var/test.log
status=${PIPESTATUS[0]}

phase "done (exit $status)"
exit "$status"
