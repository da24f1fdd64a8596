"""ctypes bindings: syscalls, ptrace, structs and constants, /proc readers.

No other module spells a raw syscall number.
"""
