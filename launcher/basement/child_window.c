/*
 * The child window: everything between clone3 and exec, in C, with no Python.
 *
 * Why C: after clone3 the child is a copy of a Python process. Running the interpreter
 * there (allocation, the GIL, signal handlers, finalizers) is neither async-signal-safe
 * nor auditable; CPython's own _posixsubprocess does this part in C for the same reason.
 * This file is compiled by cffi (launcher/basement/_build_child.py) into
 * launcher._child_window. Everything the child needs is prepared by the launcher before
 * clone3: the Landlock ruleset fd, the seccomp BPF program, argv/envp arrays, the fd
 * allowlist. The child only applies them.
 *
 * Child protocol on req->status_fd (a CLOEXEC pipe): one marker byte per completed phase
 * ('N' namespaces/cgroups, 'F' fds and signals, 'L' no_new_privs + Landlock, 'P' seccomp,
 * 'R' ready to exec), or on failure a 6-byte record 'E', phase byte, errno (int32, native
 * order) and then _exit(127). EOF after 'R' with no record means execveat succeeded (the
 * CLOEXEC pipe closed at exec).
 *
 * Order inside the child (DESIGN.md §5, with one deliberate change): wait for the parent's
 * go byte (uid_map/setgroups/gid_map and v1 cgroup placement are done by then); reset
 * signal dispositions and empty the mask; fix the fd table (keep 0-2 and keep_fds, mark
 * internal fds CLOEXEC, close everything else); no_new_privs; drop every capability
 * (when asked: securebits, bounding set, ambient, effective/permitted/inheritable); Landlock restrict_self;
 * seccomp last; execveat(exe_fd, "", AT_EMPTY_PATH). no_new_privs comes *before*
 * Landlock because landlock_restrict_self() requires it for a caller without
 * CAP_SYS_ADMIN in its namespace (the mechanism catalogue makes nonewprivs a prerequisite
 * of linux.landlock.apply.v1 for the same reason).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif
#ifndef SYS_execveat
#define SYS_execveat 322
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif
/* The new mount API (Linux 5.2 / 5.12), declared here so older headers build too. */
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#define BV_OPEN_TREE_CLONE 1
#define BV_AT_RECURSIVE 0x8000
#define BV_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define BV_MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#define BV_MOUNT_ATTR_RDONLY 0x00000001
#define BV_KEYCTL_JOIN_SESSION_KEYRING 1

struct bv_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

/* The kernel's struct clone_args (v2, with the cgroup field: 88 bytes). */
struct bv_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;
};

/* BEGIN CFFI DECLARATIONS -- _build_child.py hands exactly this block to cffi's cdef, so
 * the struct Python fills is the struct compiled here. Plain declarations only. */
struct bv_spawn_req {
    uint64_t clone_flags;
    int cgroup_fd;
    int sync_fd;
    int status_fd;
    int exe_fd;
    char *const *argv;
    char *const *envp;
    const int *keep_fds;
    int n_keep;
    const int *internal_fds;
    int n_internal;
    int scrub_fds;
    int landlock_ruleset_fd;
    const void *seccomp_filter;
    unsigned int seccomp_len;
    int parent_pid;
    int drop_caps;
    int new_session;
    const char *const *hide_paths;
    int n_hide;
    int readonly_view;
    const int *writable_fds;
    const char *const *writable_paths;
    int n_writable;
};
int bv_spawn(const struct bv_spawn_req *req, int *pid_out);
long long bv_fstatfs_type(int fd);
int bv_landlock_abi(void);
int bv_landlock_create_ruleset(uint64_t handled_access_fs, uint64_t scoped);
int bv_landlock_add_path_rule(int ruleset_fd, uint64_t allowed, int parent_fd);
/* END CFFI DECLARATIONS */

#define PHASE_SYNC 'S'
#define PHASE_NAMESPACE 'N'
#define PHASE_FDS 'F'
#define PHASE_LANDLOCK 'L'
#define PHASE_NNP 'n'
#define PHASE_CAPS 'C'
#define PHASE_MOUNT 'M'
#define PHASE_SECCOMP 'P'
#define PHASE_READY 'R'
#define PHASE_EXEC 'X'

static void bv_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static void bv_marker(const struct bv_spawn_req *req, char marker)
{
    bv_write_all(req->status_fd, &marker, 1);
}

static void __attribute__((noreturn)) bv_fail(const struct bv_spawn_req *req, char phase, int err)
{
    unsigned char record[6];
    int32_t e = err;
    record[0] = 'E';
    record[1] = (unsigned char)phase;
    memcpy(record + 2, &e, sizeof e);
    bv_write_all(req->status_fd, record, sizeof record);
    _exit(127);
}

/* Close every fd >= 3 that is neither kept for the workload nor internal (needed until
 * exec). Walks upward closing the gaps between allowed fds with close_range. */
static int bv_scrub_fds(const struct bv_spawn_req *req)
{
    unsigned int lo = 3;
    for (;;) {
        /* next allowed fd >= lo */
        int next = -1;
        for (int i = 0; i < req->n_keep; i++)
            if (req->keep_fds[i] >= (int)lo && (next < 0 || req->keep_fds[i] < next))
                next = req->keep_fds[i];
        for (int i = 0; i < req->n_internal; i++)
            if (req->internal_fds[i] >= (int)lo && (next < 0 || req->internal_fds[i] < next))
                next = req->internal_fds[i];
        unsigned int hi = next < 0 ? ~0U : (unsigned int)next - 1;
        if (next < 0 || (unsigned int)next > lo) {
            if (syscall(SYS_close_range, lo, hi, 0) != 0)
                return errno;
        }
        if (next < 0)
            return 0;
        lo = (unsigned int)next + 1;
    }
}

/* Drop every capability for good: after this, and across exec, the workload holds none.
 * Securebits first (NOROOT: exec by uid 0 grants nothing; NO_SETUID_FIXUP; no ambient
 * raise; all locked) and the bounding set — both need CAP_SETPCAP, which a process that
 * has no capabilities to lose may lack: then there is nothing to drop there. Then clear
 * ambient, and set effective, permitted and inheritable to empty (always allowed). */
static int bv_drop_capabilities(void)
{
    struct { uint32_t version; int pid; } hdr = { 0x20080522 /* _V3 */, 0 };
    struct { uint32_t effective, permitted, inheritable; } data[2];
    const unsigned long secure = (1UL << 0) | (1UL << 1) | (1UL << 2) | (1UL << 3)
        | (1UL << 5) | (1UL << 6) | (1UL << 7);
    int have_setpcap;

    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) != 0)
        return errno;
    have_setpcap = (data[0].effective >> 8) & 1; /* CAP_SETPCAP = 8 */
    if (have_setpcap) {
        if (prctl(PR_SET_SECUREBITS, secure, 0, 0, 0) != 0)
            return errno;
        for (int cap = 0; cap < 64; cap++)
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
                return errno;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        return errno;
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &hdr, data) != 0)
        return errno;
    return 0;
}

/* Every mount of the child's namespace read-only, then each write root bound back
 * writable on top of itself. Landlock decides which files may be opened; it does not see
 * chmod, utimes or setxattr, which need only a path. With the tree read-only those fail
 * (EROFS) everywhere but in the write roots — where writing is granted anyway.
 *
 * Mount objects are per namespace, so the host's root fds (which name mounts of the
 * launcher's namespace) cannot be cloned or mounted on here; the roots are found again by
 * path in this namespace, and each must be the very file the host opened (same device and
 * inode as its fd) both before it is cloned and after the writable copy is mounted. No
 * workload code runs yet; a host process swapping a path meanwhile makes the launch fault.
 * Propagation must already be private. */
static int bv_same_file(int fd_a, int fd_b)
{
    struct stat a, b;
    if (fstat(fd_a, &a) != 0 || fstat(fd_b, &b) != 0)
        return 0;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int bv_path_is_root_fd(const char *path, int root_fd)
{
    int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    int same;
    if (fd < 0)
        return 0;
    same = bv_same_file(fd, root_fd);
    close(fd);
    return same;
}

static int bv_readonly_view(const struct bv_spawn_req *req)
{
    int trees[64];
    struct bv_mount_attr attr;
    int err = 0;

    if (req->n_writable > 64)
        return E2BIG;
    for (int i = 0; i < req->n_writable; i++) {
        trees[i] = (int)syscall(SYS_open_tree, AT_FDCWD, req->writable_paths[i],
                                BV_OPEN_TREE_CLONE | O_CLOEXEC | BV_AT_RECURSIVE |
                                    AT_SYMLINK_NOFOLLOW);
        if (trees[i] < 0 || !bv_same_file(trees[i], req->writable_fds[i])) {
            err = trees[i] < 0 ? errno : ESTALE;
            for (int j = 0; j <= i; j++)
                if (trees[j] >= 0)
                    close(trees[j]);
            return err;
        }
    }
    memset(&attr, 0, sizeof attr);
    attr.attr_set = BV_MOUNT_ATTR_RDONLY;
    if (syscall(SYS_mount_setattr, AT_FDCWD, "/", BV_AT_RECURSIVE, &attr, sizeof attr) != 0)
        err = errno;
    for (int i = 0; i < req->n_writable; i++) {
        if (err == 0 && syscall(SYS_move_mount, trees[i], "", AT_FDCWD, req->writable_paths[i],
                                BV_MOVE_MOUNT_F_EMPTY_PATH) != 0)
            err = errno;
        if (err == 0 && !bv_path_is_root_fd(req->writable_paths[i], req->writable_fds[i]))
            err = ESTALE;
        close(trees[i]);
    }
    if (err == 0) {
        /* The working directory still names the old (now read-only) mount; walking to it
         * again by path crosses into a writable root mounted over it, if any. */
        char cwd[4096];
        if (getcwd(cwd, sizeof cwd) != NULL && cwd[0] == '/' && chdir(cwd) != 0)
            err = errno;
    }
    return err;
}

static void __attribute__((noreturn)) bv_child(const struct bv_spawn_req *req)
{
    char go = 0;
    ssize_t n;

    /* Die with the launcher; if it already died, do not run unsupervised. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        bv_fail(req, PHASE_SYNC, errno);
    if (getppid() != req->parent_pid)
        _exit(127);

    /* Rendezvous: the parent writes the id maps and v1 cgroup placement, then 'G'. EOF
     * means the parent gave up: exit without running anything. */
    do {
        n = read(req->sync_fd, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1 || go != 'G')
        _exit(127);
    close(req->sync_fd);

    /* Hide the cgroup filesystems (the child is in a mount namespace of its own): the
     * workload must not be able to rewrite its run's limits or move itself out of its
     * leaf, which file ownership alone would allow a uid-0 workload. Propagation is made
     * private first, so nothing mounted here is seen by the host. After the capability
     * drop the workload cannot unmount the empty read-only tmpfs again. */
    if (req->n_hide > 0 || req->readonly_view) {
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
            bv_fail(req, PHASE_MOUNT, errno);
        for (int i = 0; i < req->n_hide; i++)
            if (mount("tmpfs", req->hide_paths[i], "tmpfs",
                      MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555") != 0)
                bv_fail(req, PHASE_MOUNT, errno);
        if (req->readonly_view) {
            int err = bv_readonly_view(req);
            if (err != 0)
                bv_fail(req, PHASE_MOUNT, err);
        }
    }
    /* A session keyring of its own: the caller's is inherited across clone and exec, and
     * a process in it possesses the caller's keys (read, update). Without CONFIG_KEYS
     * there is no keyring to share (ENOSYS). */
    if (syscall(SYS_keyctl, BV_KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0 && errno != ENOSYS)
        bv_fail(req, PHASE_NAMESPACE, errno);
    bv_marker(req, PHASE_NAMESPACE);

    /* Signals: every disposition back to default (exec keeps SIG_IGN, and Python ignores
     * SIGPIPE and SIGXFSZ), then an empty mask (the parent blocked everything for us). */
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        (void)sigaction(sig, &sa, NULL); /* EINVAL for the libc-reserved RT signals */
    }
    {
        sigset_t none;
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
            bv_fail(req, PHASE_FDS, errno);
    }

    /* A new session: the workload has no controlling terminal, so it cannot open the
     * caller's /dev/tty (to read keystrokes or inject input), and terminal job-control
     * signals meant for the caller never reach it. */
    if (req->new_session && setsid() < 0)
        bv_fail(req, PHASE_FDS, errno);

    /* File descriptors: 0-2 and keep_fds survive exec; internal fds close at exec. */
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_SETFD, 0) != 0)
            bv_fail(req, PHASE_FDS, errno);
    for (int i = 0; i < req->n_keep; i++)
        if (fcntl(req->keep_fds[i], F_SETFD, 0) != 0)
            bv_fail(req, PHASE_FDS, errno);
    for (int i = 0; i < req->n_internal; i++)
        if (fcntl(req->internal_fds[i], F_SETFD, FD_CLOEXEC) != 0)
            bv_fail(req, PHASE_FDS, errno);
    if (req->scrub_fds) {
        int err = bv_scrub_fds(req);
        if (err != 0)
            bv_fail(req, PHASE_FDS, err);
    }
    bv_marker(req, PHASE_FDS);

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        bv_fail(req, PHASE_NNP, errno);
    if (req->drop_caps) {
        int err = bv_drop_capabilities();
        if (err != 0)
            bv_fail(req, PHASE_CAPS, err);
    }
    if (req->landlock_ruleset_fd >= 0) {
        if (syscall(SYS_landlock_restrict_self, req->landlock_ruleset_fd, 0) != 0)
            bv_fail(req, PHASE_LANDLOCK, errno);
        close(req->landlock_ruleset_fd);
    }
    bv_marker(req, PHASE_LANDLOCK);

    if (req->seccomp_len > 0) {
        struct sock_fprog prog;
        prog.len = (unsigned short)req->seccomp_len;
        prog.filter = (struct sock_filter *)req->seccomp_filter;
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
            bv_fail(req, PHASE_SECCOMP, errno);
    }
    bv_marker(req, PHASE_SECCOMP);

    bv_marker(req, PHASE_READY);
    syscall(SYS_execveat, req->exe_fd, "", req->argv, req->envp, AT_EMPTY_PATH);
    bv_fail(req, PHASE_EXEC, errno);
}

/* Create the child. Returns 0 and the host-visible pid, or a positive errno. All signals
 * are blocked across clone3 so no Python-level handler can run in the child. */
int bv_spawn(const struct bv_spawn_req *req, int *pid_out)
{
    struct bv_clone_args args;
    sigset_t all, old;
    long pid;
    int saved;

    if (req->seccomp_len > 0xffff)
        return EINVAL;
    memset(&args, 0, sizeof args);
    args.flags = req->clone_flags;
    args.exit_signal = SIGCHLD;
    if (req->clone_flags & CLONE_INTO_CGROUP)
        args.cgroup = (uint64_t)req->cgroup_fd;

    sigfillset(&all);
    if (sigprocmask(SIG_SETMASK, &all, &old) != 0)
        return errno;
    pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0)
        bv_child(req);
    saved = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0)
        return saved;
    *pid_out = (int)pid;
    return 0;
}

/* statfs f_type of an fd (cgroup v1 vs v2 vs anything else), or -errno. */
long long bv_fstatfs_type(int fd)
{
    struct statfs st;
    if (fstatfs(fd, &st) != 0)
        return -(long long)errno;
    return (long long)st.f_type;
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
