"""CPU facts the image depends on: XCR0 (enabled xstate features), read with xgetbv."""

from __future__ import annotations

import ctypes
import mmap

# xor ecx,ecx; xgetbv; shl rdx,32; or rax,rdx; ret
_XGETBV0 = bytes.fromhex("31c90f01d048c1e2204809d0c3")

XFEATURE_NAMES = {
    0: "x87", 1: "sse", 2: "avx", 3: "mpx-bndregs", 4: "mpx-bndcsr", 5: "avx512-opmask",
    6: "avx512-zmm-hi256", 7: "avx512-hi16-zmm", 9: "pkru", 17: "amx-tilecfg", 18: "amx-tiledata",
    19: "apx",
}


_xcr0: list[int] = []  # memo (not functools.cache: functools costs ~2 ms to import)


def xcr0() -> int:
    """The XCR0 register of this CPU (which xstate components the kernel enabled)."""
    if _xcr0:
        return _xcr0[0]
    buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(_XGETBV0)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    fn = ctypes.CFUNCTYPE(ctypes.c_uint64)(addr)
    value = fn()
    del fn
    _xcr0.append(value)
    return value


def feature_names(mask: int) -> list[str]:
    return [XFEATURE_NAMES.get(b, f"bit{b}") for b in range(64) if mask >> b & 1]
