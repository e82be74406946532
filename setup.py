"""Only here for cffi: compile bvisor's C modules at build/install time.

Two modules: the launcher's C child window, and the native canonical-CBOR validator.

All metadata lives in pyproject.toml; setuptools merges ``cffi_modules`` from here. (The
libseccomp declarations, ``bvisor.launcher._seccomp_abi``, are generated on first use by the
host instead, so the generated file carries lint/type-check opt-out headers.)
"""

from setuptools import setup

setup(
    cffi_modules=[
        "launcher/basement/_build_child.py:ffibuilder",
        "bvisor/_build_canonical.py:ffibuilder",
    ]
)
