"""cffi out-of-line ABI-mode builder for the libseccomp declarations.

libseccomp ships no header on the machines we target, so the functions bvisor uses are
declared here from the library's documented API and bound at run time with
``ffi.dlopen("libseccomp.so.2")`` (ABI mode). "Out-of-line" means the declarations are
parsed once into the small pure-Python module ``bvisor.launcher._seccomp_abi``; parsing C
declarations at every launcher start would cost more than the rest of the seccomp work.
The host generates it (:func:`bvisor.launcher.basement.seccomp.ensure_generated`, no compiler
needed) into the package directory before it first spawns a launcher.
"""

from __future__ import annotations

from cffi import FFI

__all__ = ["CDEF", "MODULE_NAME", "ffibuilder"]

MODULE_NAME = "bvisor.launcher._seccomp_abi"

CDEF = """
typedef void *scmp_filter_ctx;
struct scmp_arg_cmp {
    unsigned int arg;
    int op;
    uint64_t datum_a;
    uint64_t datum_b;
};
scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);
int seccomp_syscall_resolve_name(const char *name);
int seccomp_rule_add_exact_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                                 unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
uint32_t seccomp_arch_native(void);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(MODULE_NAME, None)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
