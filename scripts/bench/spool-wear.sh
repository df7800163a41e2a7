#!/usr/bin/env bash
# Flash wear of the durable spool: bytes the file system writes to the block device per report, measured
# on a real ext4 on a loop device (data, journal and metadata, as flash would see them), scaled to one
# hour at the default window (60 s, one report a minute). Writes that the shipper's acknowledgements add
# (the spool's watermark marks) are included: the agent ships to a real collector during the run.
#   scripts/bench/spool-wear.sh [seconds]   (default 120; needs root for the loop device)
source "$(dirname "$0")/../lib.sh"
SECONDS_RUN=${1:-120}
ensure_packages "${BUILD_PACKAGES[@]}" e2fsprogs
ensure_swift
[ "$(id -u)" -eq 0 ] || { echo "needs root (loop device)" >&2; exit 2; }

phase "building"
swift build --product meetpunt-agent >/dev/null
swift build --product meetpunt-collector >/dev/null
bin=$(swift build --show-bin-path)

work=$(mktemp -d)
dev=""
cleanup() {
    [ -n "${agent:-}" ] && kill "$agent" 2>/dev/null || true
    [ -n "${collector:-}" ] && kill "$collector" 2>/dev/null || true
    mountpoint -q "$work/mnt" && umount "$work/mnt"
    [ -n "$dev" ] && losetup -d "$dev" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

phase "an ext4 file system on a loop device as the state directory"
truncate -s 64M "$work/disk.img"
mkfs.ext4 -q -F "$work/disk.img"
dev=$(losetup -f --show "$work/disk.img")
mkdir -p "$work/mnt" && mount -t ext4 "$dev" "$work/mnt"
name=$(basename "$dev")
sectors() { awk '{print $7}' "/sys/block/$name/stat"; }

cat > "$work/collector.yaml" <<YAML
listen: {host: 127.0.0.1, port: 0}
storage: {sqlite_path: $work/c.sqlite}
retention_file: $PWD/collector/retention.yaml
YAML
"$bin/meetpunt-collector" device add wear --config "$work/collector.yaml" --token-file "$work/token" >/dev/null
"$bin/meetpunt-collector" serve --config "$work/collector.yaml" > "$work/collector.log" 2>&1 &
collector=$!
for _ in $(seq 100); do grep -q "listening on" "$work/collector.log" && break; sleep 0.1; done
port=$(grep -o "listening on [0-9.]*:[0-9]*" "$work/collector.log" | head -1 | cut -d: -f2)

# Every polled sampler at its defaults except the window: 5 s instead of 60 s, so a short run spools
# enough reports to measure per report. A report's size depends on its series, not on its length.
cat > "$work/agent.yaml" <<YAML
device_id: wear
collector: {url: "http://127.0.0.1:$port", token_file: $work/token, insecure_demo: true}
state_dir: $work/mnt/state
sampling: {interval_seconds: 5, window_seconds: 5}
link: {interfaces: ["*"], include_loopback: true}
lan_clients: {interfaces: ["*"]}
spool: {fsync: always}
YAML

phase "running the agent for ${SECONDS_RUN} s (fsync: always)"
"$bin/meetpunt-agent" run --config "$work/agent.yaml" --duration 3 2>/dev/null  # creates the secret and the spool
sync; before=$(sectors)
"$bin/meetpunt-agent" run --config "$work/agent.yaml" --duration "$SECONDS_RUN" 2> "$work/agent.log" &
agent=$!
wait "$agent"; agent=""
sync; after=$(sectors)
reports=$(grep -c "report spooled" "$work/agent.log" || true)
gzip_total=$(grep "report spooled" "$work/agent.log" | grep -o "report.gzip_bytes=[0-9]*" | cut -d= -f2 | paste -sd+ | bc)
written=$(( (after - before) * 512 ))
[ "$reports" -gt 0 ] || { echo "no reports spooled" >&2; cat "$work/agent.log" >&2; exit 1; }

phase "figures"
per_report=$(( written / reports ))
printf '%-52s %12s\n' "reports spooled" "$reports"
printf '%-52s %12s\n' "report payload (gzip JSON), mean bytes" "$(( gzip_total / reports ))"
printf '%-52s %12s\n' "bytes written to the block device" "$written"
printf '%-52s %12s\n' "device bytes per report (data + journal + metadata)" "$per_report"
printf '%-52s %12s\n' "per hour at the default 60 s window (60 reports)" "$(( per_report * 60 ))"
printf '%-52s %12s\n' "per day" "$(( per_report * 60 * 24 ))"
