/*
 * linux.landlock.apply.v2 / linux.landlock.scope.v1 in the child, and the Landlock calls
 * the launcher makes before clone3.
 *
 * The launcher creates the ruleset and adds the rules for host paths from the fds the host
 * opened. In the child, after pivot_root, the rules for the new root's own paths (/, /dev,
 * /proc, /tmp) are added from paths opened there (they exist only in the child's mount
 * namespace), then landlock_restrict_self.
 */
#include "../child/phase.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* BEGIN CFFI DECLARATIONS */
struct bv_landlock_args {
    int ruleset_fd;
    const char *const *inside_paths;
    const uint64_t *inside_access;
    int n_inside;
};
int bv_landlock_abi(void);
int bv_landlock_create_ruleset(uint64_t handled_access_fs, uint64_t scoped);
int bv_landlock_add_path_rule(int ruleset_fd, uint64_t allowed, int parent_fd);
int bv_landlock_create_net_ruleset(uint64_t handled_access_net);
int bv_landlock_add_port_rule(int ruleset_fd, uint64_t allowed, uint64_t port);
/* END CFFI DECLARATIONS */

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif

int bv_phase_landlock(const void *args, struct bv_ctx *ctx)
{
    const struct bv_landlock_args *a = args;
    for (int i = 0; i < a->n_inside; i++) {
        int fd = open(a->inside_paths[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        int rc;
        if (fd < 0)
            return bv_why(ctx, errno, "open %s for its rule", a->inside_paths[i]);
        rc = bv_landlock_add_path_rule(a->ruleset_fd, a->inside_access[i], fd);
        close(fd);
        if (rc < 0)
            return bv_why(ctx, -rc, "rule for %s", a->inside_paths[i]);
    }
    if (syscall(SYS_landlock_restrict_self, a->ruleset_fd, 0) != 0)
        return bv_why(ctx, errno, "landlock_restrict_self");
    close(a->ruleset_fd);
    return 0;
}

/* The running kernel's Landlock ABI version, or -errno (ENOSYS/EOPNOTSUPP: none). */
int bv_landlock_abi(void)
{
    long r = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return r < 0 ? -errno : (int)r;
}

/* The kernel's struct landlock_ruleset_attr up to ABI 6 (declared here so an older
 * header cannot shrink it): filesystem rights, network rights, IPC scopes. */
struct bv_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

/* A new ruleset handling these filesystem rights and scopes (fd is O_CLOEXEC), or -errno.
 * Without scopes only the ABI-1 prefix of the struct is passed, so kernels below ABI 6
 * accept the call; with scopes a kernel that does not know them refuses (EINVAL), which
 * fails the launch closed rather than dropping the scope. */
int bv_landlock_create_ruleset(uint64_t handled_access_fs, uint64_t scoped)
{
    struct bv_ruleset_attr attr;
    size_t size = scoped ? sizeof attr : sizeof attr.handled_access_fs;
    long r;
    memset(&attr, 0, sizeof attr);
    attr.handled_access_fs = handled_access_fs;
    attr.scoped = scoped;
    r = syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    return r < 0 ? -errno : (int)r;
}

/* A ruleset handling only these network rights (ABI >= 4; no filesystem right, no scope):
 * the allow list's TCP connect domain. */
int bv_landlock_create_net_ruleset(uint64_t handled_access_net)
{
    struct bv_ruleset_attr attr;
    size_t size = offsetof(struct bv_ruleset_attr, scoped);
    long r;
    memset(&attr, 0, sizeof attr);
    attr.handled_access_net = handled_access_net;
    r = syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    return r < 0 ? -errno : (int)r;
}

/* The kernel's struct landlock_net_port_attr (declared here for older headers). */
struct bv_net_port_attr {
    uint64_t allowed_access;
    uint64_t port;
};

/* Allow `allowed` (e.g. connect) for TCP port `port`; 0 or -errno. */
int bv_landlock_add_port_rule(int ruleset_fd, uint64_t allowed, uint64_t port)
{
    struct bv_net_port_attr rule;
    memset(&rule, 0, sizeof rule);
    rule.allowed_access = allowed;
    rule.port = port;
    if (syscall(SYS_landlock_add_rule, ruleset_fd, 2 /* LANDLOCK_RULE_NET_PORT */, &rule, 0) != 0)
        return -errno;
    return 0;
}

/* Allow `allowed` beneath the file or directory open at parent_fd; 0 or -errno. */
int bv_landlock_add_path_rule(int ruleset_fd, uint64_t allowed, int parent_fd)
{
    struct landlock_path_beneath_attr rule;
    memset(&rule, 0, sizeof rule);
    rule.allowed_access = allowed;
    rule.parent_fd = parent_fd;
    if (syscall(SYS_landlock_add_rule, ruleset_fd, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) != 0)
        return -errno;
    return 0;
}
