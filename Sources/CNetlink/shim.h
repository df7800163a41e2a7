#ifndef MEETPUNT_CNETLINK_SHIM_H
#define MEETPUNT_CNETLINK_SHIM_H

#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <netlink/cache.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/errno.h>
#include <netlink/route/link.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/addr.h>
#include <netlink/genl/genl.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/family.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/ethtool.h>
#include <linux/ethtool_netlink.h>
#include <linux/sockios.h>
#include <linux/nl80211.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

// nla_for_each_nested is a macro; Swift cannot call it. These two helpers walk a
// nested attribute the same way, one attribute at a time.
static inline struct nlattr *cnl_nested_first(struct nlattr *nest, int *remaining) {
    *remaining = nla_len(nest);
    return (struct nlattr *)nla_data(nest);
}
static inline struct nlattr *cnl_nested_next(struct nlattr *attr, int *remaining) {
    if (!nla_ok(attr, *remaining)) return NULL;
    return nla_next(attr, remaining);
}
static inline int cnl_nested_ok(struct nlattr *attr, int remaining) { return nla_ok(attr, remaining); }

// genlmsg_put needs NL_AUTO_PORT / NL_AUTO_SEQ, which are macros.
static inline void *cnl_genlmsg_put_request(struct nl_msg *msg, int family, int flags, uint8_t cmd, uint8_t version) {
    return genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, flags, cmd, version);
}

// The ethtool ioctl fallback (ETHTOOL_GSET through SIOCETHTOOL): for kernels
// without the ethtool generic-netlink family. Returns 0 or -errno.
static inline int cnl_ethtool_ioctl_gset(const char *ifname, uint32_t *speed, uint8_t *duplex) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct ethtool_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.cmd = ETHTOOL_GSET;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ifr.ifr_data = (char *)&cmd;
    int rc = ioctl(fd, SIOCETHTOOL, &ifr);
    int saved = errno;
    close(fd);
    if (rc < 0) return -saved;
    *speed = ethtool_cmd_speed(&cmd);
    *duplex = cmd.duplex;
    return 0;
}

// nl_recvmsgs callbacks copy each message out: its header and its whole length.
static inline const uint8_t *cnl_msg_bytes(struct nl_msg *msg, uint32_t *length) {
    struct nlmsghdr *hdr = nlmsg_hdr(msg);
    *length = hdr->nlmsg_len;
    return (const uint8_t *)hdr;
}

#endif
