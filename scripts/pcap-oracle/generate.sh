#!/usr/bin/env bash
# Runs tshark once per capture of the public corpus and writes the golden summary
# Tests/MeetpuntTests/Fixtures/pcap-golden/tshark-golden.json (see README.md beside this file).
#
#   scripts/pcap-oracle/generate.sh [oracle.py options]     e.g. --timeout 60 --only tcp__ --no-write
#
# Environment: PCAP_ORACLE_CORPUS (default /work/shared/pcaps), PCAP_ORACLE_CACHE (default
# /var/cache/meetpunt/pcap-oracle), PCAP_ORACLE_STATUS (default /tmp/pcap-oracle-status.txt).
# Raw outputs are cached per tshark package version and file sha256: a rerun starts no tshark at all.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CORPUS=${PCAP_ORACLE_CORPUS:-/work/shared/pcaps}
CACHE=${PCAP_ORACLE_CACHE:-/var/cache/meetpunt/pcap-oracle}
STATUS=${PCAP_ORACLE_STATUS:-/tmp/pcap-oracle-status.txt}

note() { echo "$(date -Is) pcap-oracle: $*" | tee -a "$STATUS" >&2; }

t0=$(date +%s.%N)

# tshark and capinfos (Debian 12: tshark 4.0.x; capinfos is in wireshark-common). The only debconf
# question, "should non-superusers be able to capture packets?", is answered "no" beforehand.
if ! command -v tshark >/dev/null 2>&1 || ! command -v capinfos >/dev/null 2>&1; then
    note "installing tshark"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends tshark >/dev/null
    note "installed $(dpkg-query -W -f='${Version}' tshark)"
fi
command -v python3 >/dev/null 2>&1 || { echo "python3 is needed" >&2; exit 1; }

mkdir -p "$CACHE"
# One generator at a time on this machine (so at most one tshark process): wait up to 2 h for the lock.
exec 9>"$CACHE/.lock"
flock -w 7200 9 || { note "another generate.sh holds $CACHE/.lock"; exit 1; }

python3 "$HERE/oracle.py" --pcaps "$CORPUS" --cache "$CACHE" --status "$STATUS" "$@"

# The README's rules, replayed on the cached header fields, must reproduce every flag tshark printed.
replay_rc=0
replay_out=$(python3 "$HERE/replay.py" --pcaps "$CORPUS" --cache "$CACHE") || replay_rc=$?
echo "$replay_out"
note "replay of the README rules: $(echo "$replay_out" | tail -1)"

t1=$(date +%s.%N)
note "generate.sh wall time $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"
if [ "$replay_rc" -ne 0 ]; then
    note "WARNING: replay.py disagrees with this tshark; README.md's rules need a look before the golden file is used"
    exit 3
fi
