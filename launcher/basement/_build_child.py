"""cffi API-mode builder for ``bvisor.launcher._child_window`` (the C child window).

Used two ways: by setuptools (``setup.py`` lists ``cffi_modules`` pointing at
``ffibuilder``), and by :mod:`bvisor.launcher.basement.window` to build the module in place on
first use from a source checkout. The C source lives next to this file so it is shipped as
package data and hashed into the launcher's code identity.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

__all__ = ["C_SOURCE", "MODULE_NAME", "ffibuilder"]

MODULE_NAME = "bvisor.launcher._child_window"
C_SOURCE = Path(__file__).with_name("child_window.c")

_BEGIN = "/* BEGIN CFFI DECLARATIONS"
_END = "/* END CFFI DECLARATIONS */"


def _declarations(source: str) -> str:
    """The C file's marked declaration block, minus its comment lines."""
    block = source[source.index(_BEGIN) : source.index(_END)]
    body = block[block.index("*/") + 2 :]
    return body.strip() + "\n"


_SOURCE = C_SOURCE.read_text(encoding="utf-8")
CDEF = _declarations(_SOURCE)

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    MODULE_NAME,
    _SOURCE,
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
