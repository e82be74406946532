/*
 * linux.utsns.v1 in the child: the plan's hostname and NIS domain name, set in the
 * child's own UTS namespace.
 *
 * clone3 made the namespace (CLONE_NEWUTS) as a copy of the launcher's, so until this op
 * runs it holds the host's names; it runs first among the ops (phase 0), with every
 * capability of the child's user namespace (CAP_SYS_ADMIN over the UTS namespace it
 * owns; a root launcher's child holds the host's). A child still in the launcher's UTS
 * namespace would be renaming the host: it refuses (the launcher passes its own
 * namespace's inode and the child compares). After setting both names it reads them back
 * with uname(2) and fails unless they are the plan's, so the workload never runs with the
 * host's names (or half of the plan's) when the plan named its own.
 */
#include "../child/phase.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

/* BEGIN CFFI DECLARATIONS */
struct bv_utsns_args {
    unsigned long long launcher_utsns_ino;
    const char *hostname;
    const char *domainname;
};
/* END CFFI DECLARATIONS */

int bv_phase_utsns(const void *args_, struct bv_ctx *ctx)
{
    const struct bv_utsns_args *a = args_;
    struct stat own;
    struct utsname now;
    if (stat("/proc/self/ns/uts", &own) != 0)
        return bv_why(ctx, errno, "stat /proc/self/ns/uts");
    if ((unsigned long long)own.st_ino == a->launcher_utsns_ino)
        return bv_why(ctx, EPERM, "still in the launcher's UTS namespace: its names are the host's");
    if (sethostname(a->hostname, strlen(a->hostname)) != 0)
        return bv_why(ctx, errno, "sethostname %s", a->hostname);
    if (setdomainname(a->domainname, strlen(a->domainname)) != 0)
        return bv_why(ctx, errno, "setdomainname %s", a->domainname);
    if (uname(&now) != 0)
        return bv_why(ctx, errno, "uname");
    if (strcmp(now.nodename, a->hostname) != 0 || strcmp(now.domainname, a->domainname) != 0)
        return bv_why(ctx, EIO, "uname shows %.64s/%.64s, not the plan's names", now.nodename,
                      now.domainname);
    return 0;
}
