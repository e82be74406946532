/*
 * linux.userns.limits.v1 in the child: cap the per-user kernel objects the workload may
 * take, in its own user namespace.
 *
 * The kernel counts inotify instances and watches and fanotify groups and marks per user
 * and per user namespace, and charges each one at every level of the namespace chain
 * against that level's limit. A new user namespace starts with no limit of its own, so
 * the workload could take all its user has. Here, with every capability of its new user
 * namespace still held (CAP_SYS_RESOURCE over it) and the host's /proc still mounted, the
 * child writes the limits the launcher computed into /proc/sys/user/ — which the kernel
 * resolves to the *writer's* user namespace. A child still in the launcher's own user
 * namespace would be writing the host's limits: it refuses (the launcher passes its own
 * namespace's inode and the child compares).
 *
 * Then the resource limits the kernel charges per user at every namespace level
 * (processes, queued signals, message queue bytes, locked shared memory): each set, soft
 * and hard, to the launcher's share. They are inherited by init and the workload, and
 * without CAP_SYS_RESOURCE in the host's namespace no one there can raise a hard limit.
 */
#include "../child/phase.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* BEGIN CFFI DECLARATIONS */
struct bv_userlimits_args {
    unsigned long long launcher_userns_ino;
    int n_limits;
    const char *const *names; /* file names under /proc/sys/user/ */
    const long long *values;
    int n_rlimits;
    const int *rlimits;                      /* RLIMIT_* */
    const unsigned long long *rlimit_values; /* soft and hard */
};
/* END CFFI DECLARATIONS */

static int userlimits_write(const char *name, long long value, struct bv_ctx *ctx)
{
    char path[96], text[32];
    int fd, len, err = 0;
    ssize_t n;
    if (snprintf(path, sizeof path, "/proc/sys/user/%s", name) >= (int)sizeof path)
        return bv_why(ctx, ENAMETOOLONG, "limit name %s", name);
    len = snprintf(text, sizeof text, "%lld\n", value);
    fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return bv_why(ctx, errno, "open %s", path);
    do {
        n = write(fd, text, (size_t)len);
    } while (n < 0 && errno == EINTR);
    if (n != len)
        err = bv_why(ctx, n < 0 ? errno : EIO, "write %lld to %s", value, path);
    close(fd);
    return err;
}

int bv_phase_userlimits(const void *args_, struct bv_ctx *ctx)
{
    const struct bv_userlimits_args *a = args_;
    struct stat own;
    if (stat("/proc/self/ns/user", &own) != 0)
        return bv_why(ctx, errno, "stat /proc/self/ns/user");
    if ((unsigned long long)own.st_ino == a->launcher_userns_ino)
        return bv_why(ctx, EPERM, "still in the launcher's user namespace: its limits are the host's");
    for (int i = 0; i < a->n_limits; i++) {
        int err = userlimits_write(a->names[i], a->values[i], ctx);
        if (err != 0)
            return err;
    }
    for (int i = 0; i < a->n_rlimits; i++) {
        struct rlimit limit = {(rlim_t)a->rlimit_values[i], (rlim_t)a->rlimit_values[i]};
        if (setrlimit(a->rlimits[i], &limit) != 0)
            return bv_why(ctx, errno, "setrlimit %d to %llu", a->rlimits[i], a->rlimit_values[i]);
    }
    return 0;
}
