#ifndef MEETPUNT_CPCAP_SHIM_H
#define MEETPUNT_CPCAP_SHIM_H
// libpcap for the header-only packet analysis (a later issue). Nothing is wrapped yet.
#include <pcap/pcap.h>
#endif
