#ifndef MEETPUNT_CPCAP_SHIM_H
#define MEETPUNT_CPCAP_SHIM_H
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdio_ext.h>

// The byte offset of the next record in an offline capture, for error messages that name where a file
// went wrong. -1 for live captures.
static inline long cpcap_file_offset(pcap_t *p) {
    FILE *f = pcap_file(p);
    return f ? ftell(f) : -1;
}

// One thread reads an offline capture's FILE: stdio's per-call lock (libpcap makes two freads a packet)
// is then pure cost.
static inline void cpcap_unlocked_file(FILE *f) { __fsetlocking(f, FSETLOCKING_BYCALLER); }

#endif
