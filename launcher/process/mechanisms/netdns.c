/*
 * linux.netdns.v1 in the child: the allow list's resolver socket, made inside the
 * workload's new network namespace and handed out, as netproxy.c does its listener.
 *
 * Runs after netproxy (which brought the loopback up), while the child still holds every
 * capability of its user namespace (binding port 53 needs CAP_NET_BIND_SERVICE there):
 * a UDP socket bound to 127.0.0.1:<port>, sent over the launcher's socketpair, then
 * closed. The workload never holds it; the host's proxy answers on it.
 */
#include "../child/phase.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* BEGIN CFFI DECLARATIONS */
struct bv_netdns_args {
    int channel_fd;
    int port;
};
/* END CFFI DECLARATIONS */

int bv_phase_netdns(const void *args_, struct bv_ctx *ctx)
{
    const struct bv_netdns_args *a = args_;
    struct sockaddr_in addr;
    int fd, err = 0;
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        close(a->channel_fd);
        return bv_why(ctx, errno, "socket for the resolver");
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)a->port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        err = bv_why(ctx, errno, "bind udp 127.0.0.1:%d", a->port);
    else if ((err = bv_send_fd(a->channel_fd, fd)) != 0)
        err = bv_why(ctx, err, "send the resolver socket to the launcher");
    close(fd);
    close(a->channel_fd);
    return err;
}
