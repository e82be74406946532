"""cffi API-mode builder for ``launcher._child_window`` (the C child window).

Used two ways: by setuptools (``setup.py`` lists ``cffi_modules`` pointing at
``ffibuilder``), and by :mod:`launcher.basement.window` to build the module in place on
first use from a source checkout. The C source lives next to this file so it is shipped as
package data and hashed into the launcher's code identity.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

__all__ = ["C_SOURCE", "MODULE_NAME", "ffibuilder"]

MODULE_NAME = "launcher._child_window"
C_SOURCE = Path(__file__).with_name("child_window.c")

CDEF = """
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
};
int bv_spawn(const struct bv_spawn_req *req, int *pid_out);
long long bv_fstatfs_type(int fd);
int bv_landlock_abi(void);
int bv_landlock_create_ruleset(uint64_t handled_access_fs, uint64_t scoped);
int bv_landlock_add_path_rule(int ruleset_fd, uint64_t allowed, int parent_fd);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    MODULE_NAME,
    C_SOURCE.read_text(encoding="utf-8"),
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
