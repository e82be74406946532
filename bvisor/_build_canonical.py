"""cffi API-mode builder for ``bvisor._canonical_c`` (the native canonical-CBOR validator).

Used two ways: by setuptools (``setup.py`` lists ``cffi_modules`` pointing at
``ffibuilder``), and by :mod:`bvisor.canonical_native` to build the module in place on first
use from a source checkout. The C source lives next to this file, so it ships as package
data; its SHA-256 is compiled into the module (``bv_canon_source_id``), which lets the
loader refuse a module built from a different source than the one beside it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cffi import FFI

__all__ = [
    "CDEF",
    "COMPILE_ARGS",
    "C_SOURCE",
    "MODULE_NAME",
    "declarations",
    "ffibuilder",
    "source_id",
]

MODULE_NAME = "bvisor._canonical_c"
C_SOURCE = Path(__file__).with_name("canonical_native.c")
COMPILE_ARGS = ["-O2", "-Wall", "-Wextra"]

_BEGIN = "/* BEGIN CFFI DECLARATIONS"
_END = "/* END CFFI DECLARATIONS */"
_SOURCE_ID_DECL = "const char *bv_canon_source_id(void);\n"


def declarations(source: str) -> str:
    """The C file's marked declaration block, minus its opening comment."""
    block = source[source.index(_BEGIN) : source.index(_END)]
    body = block[block.index("*/") + 2 :]
    return body.strip() + "\n"


def source_id(source: str) -> str:
    """Hex SHA-256 of the C source text (what a built module says it was built from)."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


_SOURCE = C_SOURCE.read_text(encoding="utf-8")
CDEF = declarations(_SOURCE) + _SOURCE_ID_DECL

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    MODULE_NAME,
    _SOURCE
    + "\nconst char *bv_canon_source_id(void)\n{\n"
    + f'    return "{source_id(_SOURCE)}";\n}}\n',
    extra_compile_args=COMPILE_ARGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
