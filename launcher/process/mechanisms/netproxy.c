/*
 * linux.netproxy.v1 in the child: the allow list's listener, made inside the workload's
 * new network namespace and handed out.
 *
 * Runs while the child still holds every capability of its user namespace (which owns
 * the new network namespace): bring the loopback up (SIOCSIFFLAGS: CAP_NET_ADMIN), make a
 * TCP socket listening on 127.0.0.1:<port> there, send that one fd over the launcher's
 * socketpair (SCM_RIGHTS, one 'L' byte), then close both: the workload never holds the
 * listener, so it can neither accept its own connections nor pass it on. The proxy that
 * accepts on it runs on the host, in the host's namespace; nothing inside relays.
 */
#include "../child/phase.h"

#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* BEGIN CFFI DECLARATIONS */
struct bv_netproxy_args {
    int channel_fd;
    int port;
    int backlog;
};
/* END CFFI DECLARATIONS */

static int netproxy_loopback_up(struct bv_ctx *ctx)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int err = 0;
    if (fd < 0)
        return bv_why(ctx, errno, "socket for the loopback's flags");
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0)
        err = bv_why(ctx, errno, "SIOCGIFFLAGS lo");
    else if (!(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0)
            err = bv_why(ctx, errno, "SIOCSIFFLAGS lo up");
    }
    close(fd);
    return err;
}

int bv_phase_netproxy(const void *args_, struct bv_ctx *ctx)
{
    const struct bv_netproxy_args *a = args_;
    struct sockaddr_in addr;
    int one = 1, fd, err;
    if ((err = netproxy_loopback_up(ctx)) != 0)
        return err;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bv_why(ctx, errno, "socket for the listener");
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)a->port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        err = bv_why(ctx, errno, "SO_REUSEADDR");
    else if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        err = bv_why(ctx, errno, "bind 127.0.0.1:%d", a->port);
    else if (listen(fd, a->backlog) != 0)
        err = bv_why(ctx, errno, "listen on 127.0.0.1:%d", a->port);
    else if ((err = bv_send_fd(a->channel_fd, fd)) != 0)
        err = bv_why(ctx, err, "send the listener to the launcher");
    close(fd);
    close(a->channel_fd);
    return err;
}
