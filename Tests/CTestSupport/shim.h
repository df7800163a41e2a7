#ifndef MEETPUNT_CTESTSUPPORT_SHIM_H
#define MEETPUNT_CTESTSUPPORT_SHIM_H
// Test-only helpers: entering a network namespace and sending AF_PACKET frames.
// setns(2) is declared by <sched.h> only under _GNU_SOURCE, and defining that here would change libc's
// struct definitions against the ones Swift's Glibc module already has, so it is declared by hand.
extern int setns(int fd, int nstype);
#ifndef CLONE_NEWNET
#define CLONE_NEWNET 0x40000000
#endif
#include <sys/socket.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>

static inline int ctest_enter_netns(int fd) { return setns(fd, CLONE_NEWNET); }

// Sends `count` copies of `frame` out of interface `ifindex`. Returns frames sent, or -errno.
static inline int ctest_send_frames(int ifindex, const unsigned char *frame, int length, int count) {
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_ll address;
    memset(&address, 0, sizeof(address));
    address.sll_family = AF_PACKET;
    address.sll_ifindex = ifindex;
    address.sll_halen = 6;
    memcpy(address.sll_addr, frame, 6);
    int sent = 0;
    for (int i = 0; i < count; i++) {
        if (sendto(fd, frame, length, 0, (struct sockaddr *)&address, sizeof(address)) != length) {
            int e = errno;
            close(fd);
            return -e;
        }
        sent++;
    }
    close(fd);
    return sent;
}
#endif
