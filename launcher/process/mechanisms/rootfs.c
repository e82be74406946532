/*
 * linux.rootfs.v1 in the child: build the private root and pivot into it.
 *
 * Runs as the PID namespace's init (pid 1), inside the new mount namespace (and user
 * namespace unless the launcher is root), before any workload code. In order:
 *
 *  1. every mount becomes private, so nothing done here reaches the host;
 *  2. each host source is cloned (open_tree, recursive) *before* anything is mounted,
 *     checked to be the very inode the host opened (its fd) — or, for a device, the very
 *     device number — and made nosuid,nodev (+ read-only for read roots; devices
 *     read-only and noexec, so their mode, owner and times cannot change);
 *  3. an empty tmpfs becomes the new root (attached at a base directory of the old tree);
 *  4. the mount table is built inside it, parents first: a missing directory is made
 *     only inside a tmpfs of ours (never in a bound host tree, so nothing is created on
 *     the host), and every path is walked without following a symlink;
 *     A file of the plan's own (the resolver's resolv.conf) is written in the root tmpfs
 *     under a hidden name, bound read-only at its destination (onto a symlink there, not
 *     through it) and unlinked, so only the destination shows it;
 *  5. pivot_root into it, the old root detached; the root tmpfs made read-only; chdir.
 *
 * Failure names the step and path in the detail; the launch then faults (the child exits
 * before any workload code ran).
 */
#include "../child/phase.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* BEGIN CFFI DECLARATIONS */
enum bv_mount_kind {
    BV_MOUNT_BIND = 1,
    BV_MOUNT_DEV = 2,
    BV_MOUNT_PROC = 3,
    BV_MOUNT_TMPFS = 4,
    BV_MOUNT_DIR = 5,
    BV_MOUNT_FILE = 6
};

struct bv_mount {
    int kind;
    const char *dest;
    const char *source;
    int source_fd;
    int readonly;
    int is_link;
    uint64_t size;
    unsigned int mode;
    const char *const *devices;
    const unsigned int *dev_major;
    const unsigned int *dev_minor;
    int n_devices;
    int pts;
    const char *content;
    int required;
};

struct bv_rootfs_args {
    const struct bv_mount *mounts;
    int n_mounts;
    const char *base;
    const char *cwd;
    uint64_t root_size;
};
/* END CFFI DECLARATIONS */

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_pivot_root
#define SYS_pivot_root 155
#endif

#define RF_OPEN_TREE_CLONE 1
#define RF_AT_RECURSIVE 0x8000
#define RF_MOVE_F_EMPTY 0x00000004
#define RF_MOVE_T_EMPTY 0x00000040
#define RF_ATTR_RDONLY 0x00000001
#define RF_ATTR_NOSUID 0x00000002
#define RF_ATTR_NODEV 0x00000004
#define RF_ATTR_NOEXEC 0x00000008
#define RF_FSOPEN_CLOEXEC 1
#define RF_FSMOUNT_CLOEXEC 1
#define RF_FSCONFIG_SET_FLAG 0
#define RF_FSCONFIG_SET_STRING 1
#define RF_FSCONFIG_CMD_CREATE 6
#define RF_MAX_MOUNTS 256
#define RF_MAX_DEVICES 16
#define RF_MAX_OURS (RF_MAX_MOUNTS + 4)

struct rf_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

struct rf_state {
    int trees[RF_MAX_MOUNTS];
    int dev_trees[RF_MAX_DEVICES];
    char links[RF_MAX_MOUNTS][PATH_MAX];
    dev_t ours[RF_MAX_OURS]; /* the tmpfs mounts this op made: only there are dirs made */
    int n_ours;
};

static struct rf_state rf;

static int rf_setattr(int tree, uint64_t set, int recursive)
{
    struct rf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = set;
    return (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (recursive ? RF_AT_RECURSIVE : 0),
                        &attr, sizeof attr);
}

static int rf_same_file(int a, int b)
{
    struct stat sa, sb;
    if (fstat(a, &sa) != 0 || fstat(b, &sb) != 0)
        return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int rf_is_ours(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return 0;
    for (int i = 0; i < rf.n_ours; i++)
        if (rf.ours[i] == st.st_dev)
            return 1;
    return 0;
}

static int rf_remember(int fd)
{
    struct stat st;
    if (rf.n_ours >= RF_MAX_OURS || fstat(fd, &st) != 0)
        return -1;
    rf.ours[rf.n_ours++] = st.st_dev;
    return 0;
}

/* A new detached mount of `fstype`: fsopen, options (key, value pairs ending with a NULL
 * key; a NULL value is a flag), fsmount. Returns the mount fd or -errno. */
static int rf_new_fs(struct bv_ctx *ctx, const char *fstype, const char *const *options,
                     uint64_t attrs)
{
    int fs = (int)syscall(SYS_fsopen, fstype, RF_FSOPEN_CLOEXEC);
    int mnt;
    if (fs < 0)
        return -bv_why(ctx, errno, "fsopen %s", fstype);
    for (int i = 0; options != NULL && options[i] != NULL; i += 2) {
        int cmd = options[i + 1] == NULL ? RF_FSCONFIG_SET_FLAG : RF_FSCONFIG_SET_STRING;
        if (syscall(SYS_fsconfig, fs, cmd, options[i], options[i + 1], 0) != 0) {
            int err = errno;
            close(fs);
            return -bv_why(ctx, err, "%s option %s", fstype, options[i]);
        }
    }
    if (syscall(SYS_fsconfig, fs, RF_FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0) {
        int err = errno;
        close(fs);
        return -bv_why(ctx, err, "create %s", fstype);
    }
    mnt = (int)syscall(SYS_fsmount, fs, RF_FSMOUNT_CLOEXEC, attrs);
    if (mnt < 0) {
        int err = errno;
        close(fs);
        return -bv_why(ctx, err, "fsmount %s", fstype);
    }
    close(fs);
    return mnt;
}

static int rf_tmpfs(struct bv_ctx *ctx, uint64_t size, unsigned int mode, uint64_t attrs)
{
    char size_text[32], mode_text[16];
    const char *options[] = {"size", size_text, "mode", mode_text, NULL};
    snprintf(size_text, sizeof size_text, "%llu", (unsigned long long)size);
    snprintf(mode_text, sizeof mode_text, "%o", mode);
    return rf_new_fs(ctx, "tmpfs", options, attrs);
}

/* Open the directory at `path` beneath `root` component by component, never following a
 * symlink, making a missing component only inside a tmpfs of ours. */
static int rf_walk_dir(struct bv_ctx *ctx, int root, const char *path)
{
    char copy[PATH_MAX];
    char *save = NULL;
    int cur = dup(root);
    if (cur < 0)
        return -bv_why(ctx, errno, "dup root");
    if (strlen(path) >= sizeof copy) {
        close(cur);
        return -bv_why(ctx, ENAMETOOLONG, "%s", path);
    }
    strcpy(copy, path);
    for (char *part = strtok_r(copy, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        int next = openat(cur, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && rf_is_ours(cur)) {
            if (mkdirat(cur, part, 0755) != 0 && errno != EEXIST) {
                int err = errno;
                close(cur);
                return -bv_why(ctx, err, "mkdir %s in %s", part, path);
            }
            next = openat(cur, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0) {
            int err = errno;
            close(cur);
            return -bv_why(ctx, err, "walk %s at %s", path, part);
        }
        close(cur);
        cur = next;
    }
    return cur;
}

/* Split "/a/b/c" into its parent directory fd (walked as above) and last name. */
static int rf_walk_parent(struct bv_ctx *ctx, int root, const char *path, const char **name)
{
    char parent[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t len;
    if (slash == NULL || slash[1] == '\0')
        return -bv_why(ctx, EINVAL, "bad destination %s", path);
    len = (size_t)(slash - path);
    if (len >= sizeof parent)
        return -bv_why(ctx, ENAMETOOLONG, "%s", path);
    memcpy(parent, path, len);
    parent[len] = '\0';
    *name = slash + 1;
    return rf_walk_dir(ctx, root, len == 0 ? "/" : parent);
}

/* A regular file to mount a file or device onto: existing, or made inside a tmpfs of
 * ours. */
static int rf_file_point(struct bv_ctx *ctx, int root, const char *path)
{
    const char *name;
    struct stat st;
    int fd, parent = rf_walk_parent(ctx, root, path, &name);
    if (parent < 0)
        return parent;
    fd = openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && rf_is_ours(parent)) {
        int made = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0444);
        if (made >= 0)
            close(made);
        fd = openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
        int err = errno;
        close(parent);
        return -bv_why(ctx, err, "mount point %s", path);
    }
    close(parent);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -bv_why(ctx, ENOTDIR, "mount point %s is not a regular file", path);
    }
    return fd;
}

static int rf_attach(struct bv_ctx *ctx, int tree, int point, const char *what)
{
    if (syscall(SYS_move_mount, tree, "", point, "", RF_MOVE_F_EMPTY | RF_MOVE_T_EMPTY) != 0)
        return bv_why(ctx, errno, "mount %s", what);
    return 0;
}

/* Step 2: clone one bind source, or read the link it is. */
static int rf_clone_source(struct bv_ctx *ctx, const struct bv_mount *m, int index)
{
    uint64_t attrs = RF_ATTR_NOSUID | RF_ATTR_NODEV | (m->readonly ? RF_ATTR_RDONLY : 0);
    int tree;
    rf.trees[index] = -1;
    if (m->source_fd < 0)
        return 0; /* optional and absent on this host: skipped */
    if (m->is_link) {
        ssize_t n = readlinkat(m->source_fd, "", rf.links[index], PATH_MAX - 1);
        if (n < 0)
            return bv_why(ctx, errno, "readlink %s", m->source);
        rf.links[index][n] = '\0';
        return 0;
    }
    tree = (int)syscall(SYS_open_tree, AT_FDCWD, m->source,
                        RF_OPEN_TREE_CLONE | O_CLOEXEC | RF_AT_RECURSIVE | AT_SYMLINK_NOFOLLOW);
    if (tree < 0)
        return bv_why(ctx, errno, "clone %s", m->source);
    if (!rf_same_file(tree, m->source_fd)) {
        close(tree);
        return bv_why(ctx, ESTALE, "%s is no longer the file the host opened", m->source);
    }
    if (rf_setattr(tree, attrs, 1) != 0) {
        int err = errno;
        close(tree);
        return bv_why(ctx, err, "attributes of %s", m->source);
    }
    rf.trees[index] = tree;
    return 0;
}

static int rf_clone_devices(struct bv_ctx *ctx, const struct bv_mount *m)
{
    if (m->n_devices > RF_MAX_DEVICES)
        return bv_why(ctx, E2BIG, "too many devices");
    for (int i = 0; i < m->n_devices; i++) {
        char path[64];
        struct stat st;
        int tree;
        snprintf(path, sizeof path, "/dev/%s", m->devices[i]);
        tree = (int)syscall(SYS_open_tree, AT_FDCWD, path,
                            RF_OPEN_TREE_CLONE | O_CLOEXEC | AT_SYMLINK_NOFOLLOW);
        if (tree < 0)
            return bv_why(ctx, errno, "clone %s", path);
        if (fstat(tree, &st) != 0 || !S_ISCHR(st.st_mode) ||
            major(st.st_rdev) != m->dev_major[i] || minor(st.st_rdev) != m->dev_minor[i]) {
            close(tree);
            return bv_why(ctx, ESTALE, "%s is not the expected device", path);
        }
        if (rf_setattr(tree, RF_ATTR_RDONLY | RF_ATTR_NOSUID | RF_ATTR_NOEXEC, 0) != 0) {
            int err = errno;
            close(tree);
            return bv_why(ctx, err, "attributes of %s", path);
        }
        rf.dev_trees[i] = tree;
    }
    return 0;
}

static int rf_bind(struct bv_ctx *ctx, int root, const struct bv_mount *m, int index)
{
    struct stat st;
    int point, err;
    if (m->source_fd < 0)
        return 0;
    if (m->is_link) {
        const char *name;
        int parent = rf_walk_parent(ctx, root, m->dest, &name);
        if (parent < 0)
            return -parent;
        err = rf_is_ours(parent) ? 0 : EPERM;
        if (err == 0 && symlinkat(rf.links[index], parent, name) != 0)
            err = errno;
        close(parent);
        return err == 0 ? 0 : bv_why(ctx, err, "link %s -> %s", m->dest, rf.links[index]);
    }
    if (fstat(rf.trees[index], &st) != 0)
        return bv_why(ctx, errno, "stat %s", m->source);
    point = S_ISDIR(st.st_mode) ? rf_walk_dir(ctx, root, m->dest) : rf_file_point(ctx, root, m->dest);
    if (point < 0)
        return -point;
    err = rf_attach(ctx, rf.trees[index], point, m->dest);
    close(point);
    close(rf.trees[index]);
    rf.trees[index] = -1;
    return err;
}

static int rf_tmpfs_at(struct bv_ctx *ctx, int root, const struct bv_mount *m)
{
    int point = rf_walk_dir(ctx, root, m->dest), mnt, err;
    if (point < 0)
        return -point;
    mnt = rf_tmpfs(ctx, m->size, m->mode, RF_ATTR_NOSUID | RF_ATTR_NODEV);
    if (mnt < 0) {
        close(point);
        return -mnt;
    }
    err = rf_attach(ctx, mnt, point, m->dest);
    close(point);
    if (err == 0 && rf_remember(mnt) != 0)
        err = bv_why(ctx, ENOMEM, "too many tmpfs mounts");
    close(mnt);
    return err;
}

static int rf_dir(struct bv_ctx *ctx, int root, const struct bv_mount *m)
{
    const char *name;
    int parent = rf_walk_parent(ctx, root, m->dest, &name), err = 0;
    if (parent < 0)
        return -parent;
    if (!rf_is_ours(parent))
        err = bv_why(ctx, EPERM, "%s: its parent is not a tmpfs of the root", m->dest);
    else if (mkdirat(parent, name, m->mode) != 0)
        err = bv_why(ctx, errno, "mkdir %s", m->dest);
    close(parent);
    return err;
}

/* The mount point for a file of ours at `dest`: a symlink there is itself the point (the
 * new mount API mounts onto the link, so the path shows our file and leads nowhere else),
 * else an existing regular file or one made inside a tmpfs of ours. */
static int rf_file_dest(struct bv_ctx *ctx, int root, const char *dest)
{
    const char *name;
    struct stat st;
    int fd, parent = rf_walk_parent(ctx, root, dest, &name);
    if (parent < 0)
        return parent;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISLNK(st.st_mode)) {
        close(parent);
        return rf_file_point(ctx, root, dest);
    }
    fd = openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    close(parent);
    return fd >= 0 ? fd : -bv_why(ctx, errno, "mount point %s (a symlink)", dest);
}

/* Is `dest` absent where no file can be made (inside a host bind)? Then a file mount that
 * is not required is skipped. Walked as the placement walks (no symlink followed). */
static int rf_file_unplaceable(struct bv_ctx *ctx, int root, const char *dest)
{
    const char *name;
    struct stat st;
    int absent, parent = rf_walk_parent(ctx, root, dest, &name);
    if (parent < 0) {
        ctx->detail[0] = '\0'; /* a probe: the placement names any real failure */
        return parent == -ENOENT;
    }
    absent = fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT;
    absent = absent && !rf_is_ours(parent);
    close(parent);
    return absent;
}

static int rf_file(struct bv_ctx *ctx, int root, const struct bv_mount *m, int index)
{
    char hidden[32];
    size_t len = strlen(m->content);
    int file, tree, point, err = 0;
    if (!m->required && rf_file_unplaceable(ctx, root, m->dest))
        return 0; /* not required, and the host's tree has no place for it */
    snprintf(hidden, sizeof hidden, ".bvisor-file-%d", index);
    file = openat(root, hidden, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (file < 0)
        return bv_why(ctx, errno, "make the file for %s", m->dest);
    if (write(file, m->content, len) != (ssize_t)len)
        err = bv_why(ctx, errno ? errno : EIO, "write the file for %s", m->dest);
    close(file);
    tree = err ? -1 : (int)syscall(SYS_open_tree, root, hidden, RF_OPEN_TREE_CLONE | O_CLOEXEC);
    if (err == 0 && tree < 0)
        err = bv_why(ctx, errno, "clone the file for %s", m->dest);
    if (err == 0 && rf_setattr(tree, RF_ATTR_RDONLY | RF_ATTR_NOSUID | RF_ATTR_NODEV |
                                         RF_ATTR_NOEXEC, 0) != 0)
        err = bv_why(ctx, errno, "attributes of the file for %s", m->dest);
    if (err == 0) {
        point = rf_file_dest(ctx, root, m->dest);
        if (point < 0)
            err = -point;
        else {
            err = rf_attach(ctx, tree, point, m->dest);
            close(point);
        }
    }
    if (tree >= 0)
        close(tree);
    if (unlinkat(root, hidden, 0) != 0 && err == 0)
        err = bv_why(ctx, errno, "unlink the file for %s", m->dest);
    return err;
}

/* A minimal /dev: devices, links, shm, and devpts when a pty is used. */
static int rf_dev(struct bv_ctx *ctx, int root, const struct bv_mount *m)
{
    static const char *const links[][2] = {
        {"fd", "/proc/self/fd"},
        {"stdin", "/proc/self/fd/0"},
        {"stdout", "/proc/self/fd/1"},
        {"stderr", "/proc/self/fd/2"},
    };
    int point = rf_walk_dir(ctx, root, m->dest), mnt, dev, err = 0;
    if (point < 0)
        return -point;
    mnt = rf_tmpfs(ctx, 1 << 20, 0755, RF_ATTR_NOSUID | RF_ATTR_NOEXEC);
    if (mnt < 0) {
        close(point);
        return -mnt;
    }
    err = rf_attach(ctx, mnt, point, m->dest);
    close(point);
    if (err != 0) {
        close(mnt);
        return err;
    }
    dev = rf_walk_dir(ctx, root, m->dest);
    if (dev < 0) {
        close(mnt);
        return -dev;
    }
    for (int i = 0; err == 0 && i < m->n_devices; i++) {
        int file = openat(dev, m->devices[i], O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0444);
        int at;
        if (file < 0) {
            err = bv_why(ctx, errno, "device point %s", m->devices[i]);
            break;
        }
        close(file);
        at = openat(dev, m->devices[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (at < 0) {
            err = bv_why(ctx, errno, "device point %s", m->devices[i]);
            break;
        }
        err = rf_attach(ctx, rf.dev_trees[i], at, m->devices[i]);
        close(at);
        close(rf.dev_trees[i]);
        rf.dev_trees[i] = -1;
    }
    for (size_t i = 0; err == 0 && i < sizeof links / sizeof links[0]; i++)
        if (symlinkat(links[i][1], dev, links[i][0]) != 0)
            err = bv_why(ctx, errno, "link /dev/%s", links[i][0]);
    if (err == 0) {
        int shm_point, shm;
        if (mkdirat(dev, "shm", 01777) != 0)
            err = bv_why(ctx, errno, "mkdir /dev/shm");
        else if ((shm_point = openat(dev, "shm", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
            err = bv_why(ctx, errno, "open /dev/shm");
        else {
            shm = rf_tmpfs(ctx, m->size, 01777, RF_ATTR_NOSUID | RF_ATTR_NODEV);
            err = shm < 0 ? -shm : rf_attach(ctx, shm, shm_point, "/dev/shm");
            if (shm >= 0)
                close(shm);
            close(shm_point);
        }
    }
    if (err == 0 && m->pts) {
        static const char *const options[] = {"newinstance", NULL, "ptmxmode", "0666",
                                              "mode", "0620", NULL};
        int pts_point, pts;
        if (mkdirat(dev, "pts", 0755) != 0)
            err = bv_why(ctx, errno, "mkdir /dev/pts");
        else if ((pts_point = openat(dev, "pts", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
            err = bv_why(ctx, errno, "open /dev/pts");
        else {
            pts = rf_new_fs(ctx, "devpts", options, RF_ATTR_NOSUID | RF_ATTR_NOEXEC);
            err = pts < 0 ? -pts : rf_attach(ctx, pts, pts_point, "/dev/pts");
            if (pts >= 0)
                close(pts);
            close(pts_point);
            if (err == 0 && symlinkat("pts/ptmx", dev, "ptmx") != 0)
                err = bv_why(ctx, errno, "link /dev/ptmx");
        }
    }
    /* Populated: the /dev tmpfs itself becomes read-only (shm and pts stay writable). */
    if (err == 0 && rf_setattr(mnt, RF_ATTR_RDONLY, 0) != 0)
        err = bv_why(ctx, errno, "read-only /dev");
    close(dev);
    close(mnt);
    return err;
}

/* Does this top-level file of a fresh procfs show something that is not the namespace's
 * own? By name: the kernel keys the caller may view (their descriptions name what they
 * are for: tokens, service accounts) and its key quotas, and the kernel's symbols (their
 * addresses shown to whoever the host's kptr_restrict and perf_event_paranoid let see
 * them). By mode: every file "others" may not read (slabinfo, timer_list, vmallocinfo,
 * pagetypeinfo, kpage*, ...): the host's kernel state, readable by the global root user
 * alone, which a root caller's workload is (its uid maps to 0). */
static int rf_proc_hidden(const char *name, const struct stat *seen)
{
    static const char *const by_name[] = {"keys", "key-users", "kallsyms"};
    if (!S_ISREG(seen->st_mode))
        return 0;
    if (!(seen->st_mode & S_IROTH))
        return 1;
    for (size_t i = 0; i < sizeof by_name / sizeof by_name[0]; i++)
        if (strcmp(name, by_name[i]) == 0)
            return 1;
    return 0;
}

/* Cover one file of the procfs with a clone of the empty file of fs (read-only already:
 * a clone keeps its source's mount flags). */
static int rf_proc_cover_one(struct bv_ctx *ctx, int proc, int fs, const char *name)
{
    int err = 0;
    int tree = (int)syscall(SYS_open_tree, fs, "empty",
                            RF_OPEN_TREE_CLONE | O_CLOEXEC | AT_SYMLINK_NOFOLLOW);
    if (tree < 0)
        return bv_why(ctx, errno, "clone the cover of /proc/%s", name);
    if (syscall(SYS_move_mount, tree, "", proc, name, RF_MOVE_F_EMPTY) != 0)
        err = bv_why(ctx, errno, "cover /proc/%s", name);
    close(tree);
    return err;
}

/* The files of a fresh procfs that are not this namespace's (rf_proc_hidden), each
 * covered by one empty read-only file of a tmpfs of its own, made detached and never seen
 * anywhere else. The directory is read with getdents64 into a buffer on the stack (no
 * allocation in the child); a name is covered only once it is read whole. */
static int rf_proc_cover(struct bv_ctx *ctx, int proc)
{
    char buf[8192] __attribute__((aligned(8)));
    int fs = rf_tmpfs(ctx, 4096, 0555, RF_ATTR_NOSUID | RF_ATTR_NODEV | RF_ATTR_NOEXEC);
    int dir, empty, err = 0;
    if (fs < 0)
        return -fs;
    empty = openat(fs, "empty", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (empty < 0) {
        err = bv_why(ctx, errno, "create the empty cover of /proc");
        close(fs);
        return err;
    }
    close(empty);
    if (rf_setattr(fs, RF_ATTR_RDONLY, 0) != 0) {
        err = bv_why(ctx, errno, "read-only cover of /proc");
        close(fs);
        return err;
    }
    dir = openat(proc, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        err = bv_why(ctx, errno, "open /proc to list it");
        close(fs);
        return err;
    }
    while (err == 0) {
        long got = syscall(SYS_getdents64, dir, buf, sizeof buf);
        if (got < 0) {
            err = bv_why(ctx, errno, "list /proc");
            break;
        }
        if (got == 0)
            break;
        for (long at = 0; err == 0 && at < got;) {
            const struct rf_dirent64 {
                uint64_t ino;
                int64_t off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *entry = (const void *)(buf + at);
            struct stat seen;
            at += entry->reclen;
            if (entry->name[0] < '0' || entry->name[0] > '9') {
                if (fstatat(proc, entry->name, &seen, AT_SYMLINK_NOFOLLOW) != 0) {
                    if (errno != ENOENT) /* gone between the listing and the look */
                        err = bv_why(ctx, errno, "stat /proc/%s", entry->name);
                } else if (rf_proc_hidden(entry->name, &seen)) {
                    err = rf_proc_cover_one(ctx, proc, fs, entry->name);
                }
            }
        }
    }
    close(dir);
    close(fs);
    return err;
}

/* A fresh procfs of this PID namespace; the parts that configure the host read-only, the
 * parts that are not this namespace's covered (rf_proc_cover). */
static int rf_proc(struct bv_ctx *ctx, int root, const struct bv_mount *m)
{
    static const char *const protected[] = {"sys", "sysrq-trigger", "irq", "bus"};
    int point = rf_walk_dir(ctx, root, m->dest), mnt, proc, err;
    if (point < 0)
        return -point;
    mnt = rf_new_fs(ctx, "proc", NULL, RF_ATTR_NOSUID | RF_ATTR_NODEV | RF_ATTR_NOEXEC);
    if (mnt < 0) {
        close(point);
        return -mnt;
    }
    err = rf_attach(ctx, mnt, point, m->dest);
    close(point);
    close(mnt);
    if (err != 0)
        return err;
    proc = rf_walk_dir(ctx, root, m->dest);
    if (proc < 0)
        return -proc;
    for (size_t i = 0; err == 0 && i < sizeof protected / sizeof protected[0]; i++) {
        int tree = (int)syscall(SYS_open_tree, proc, protected[i],
                                RF_OPEN_TREE_CLONE | O_CLOEXEC | RF_AT_RECURSIVE |
                                    AT_SYMLINK_NOFOLLOW);
        if (tree < 0) {
            if (errno != ENOENT)
                err = bv_why(ctx, errno, "clone /proc/%s", protected[i]);
            continue;
        }
        if (rf_setattr(tree, RF_ATTR_RDONLY | RF_ATTR_NOSUID | RF_ATTR_NODEV | RF_ATTR_NOEXEC, 1) != 0)
            err = bv_why(ctx, errno, "read-only /proc/%s", protected[i]);
        else if (syscall(SYS_move_mount, tree, "", proc, protected[i], RF_MOVE_F_EMPTY) != 0)
            err = bv_why(ctx, errno, "mount read-only /proc/%s", protected[i]);
        close(tree);
    }
    if (err == 0)
        err = rf_proc_cover(ctx, proc);
    close(proc);
    return err;
}

int bv_phase_rootfs(const void *args_, struct bv_ctx *ctx)
{
    const struct bv_rootfs_args *a = args_;
    struct rf_attr ro;
    int root_mnt, root, base, err = 0;

    if (a->n_mounts > RF_MAX_MOUNTS)
        return bv_why(ctx, E2BIG, "more than %d mounts", RF_MAX_MOUNTS);
    memset(&rf, 0, sizeof rf);
    for (int i = 0; i < RF_MAX_DEVICES; i++)
        rf.dev_trees[i] = -1;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return bv_why(ctx, errno, "make mounts private");
    for (int i = 0; err == 0 && i < a->n_mounts; i++) {
        const struct bv_mount *m = &a->mounts[i];
        if (m->kind == BV_MOUNT_BIND)
            err = rf_clone_source(ctx, m, i);
        else if (m->kind == BV_MOUNT_DEV)
            err = rf_clone_devices(ctx, m);
        else
            rf.trees[i] = -1;
    }
    if (err != 0)
        return err;
    root_mnt = rf_tmpfs(ctx, a->root_size, 0755, RF_ATTR_NOSUID | RF_ATTR_NODEV);
    if (root_mnt < 0)
        return -root_mnt;
    base = open(a->base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (base < 0)
        return bv_why(ctx, errno, "base %s", a->base);
    err = rf_attach(ctx, root_mnt, base, "the root tmpfs");
    close(base);
    if (err == 0 && rf_remember(root_mnt) != 0)
        err = bv_why(ctx, ENOMEM, "remember root");
    close(root_mnt);
    if (err != 0)
        return err;
    root = open(a->base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0)
        return bv_why(ctx, errno, "open the new root");
    for (int i = 0; err == 0 && i < a->n_mounts; i++) {
        const struct bv_mount *m = &a->mounts[i];
        switch (m->kind) {
        case BV_MOUNT_BIND:
            err = rf_bind(ctx, root, m, i);
            break;
        case BV_MOUNT_TMPFS:
            err = rf_tmpfs_at(ctx, root, m);
            break;
        case BV_MOUNT_DIR:
            err = rf_dir(ctx, root, m);
            break;
        case BV_MOUNT_DEV:
            err = rf_dev(ctx, root, m);
            break;
        case BV_MOUNT_PROC:
            err = rf_proc(ctx, root, m);
            break;
        case BV_MOUNT_FILE:
            err = rf_file(ctx, root, m, i);
            break;
        default:
            err = bv_why(ctx, EINVAL, "unknown mount kind %d", m->kind);
        }
    }
    if (err == 0 && fchdir(root) != 0)
        err = bv_why(ctx, errno, "enter the new root");
    close(root);
    if (err != 0)
        return err;
    /* pivot_root(".", "."): the old root ends up on top of the new one, then detached. */
    if (syscall(SYS_pivot_root, ".", ".") != 0)
        return bv_why(ctx, errno, "pivot_root");
    if (umount2(".", MNT_DETACH) != 0)
        return bv_why(ctx, errno, "detach the old root");
    if (chdir("/") != 0)
        return bv_why(ctx, errno, "chdir /");
    memset(&ro, 0, sizeof ro);
    ro.attr_set = RF_ATTR_RDONLY;
    if (syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, &ro, sizeof ro) != 0)
        return bv_why(ctx, errno, "read-only root");
    if (chdir(a->cwd) != 0)
        return bv_why(ctx, errno, "chdir %s", a->cwd);
    return 0;
}
