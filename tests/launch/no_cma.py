#!/usr/bin/python3
"""no_cma.py CMD...: runs CMD under a seccomp filter that refuses process_vm_readv and
process_vm_writev with EPERM (as Docker's default profile does without CAP_SYS_PTRACE)."""
import ctypes, os, platform, struct, sys

NR = {"x86_64": (0xC000003E, 310, 311), "aarch64": (0xC00000B7, 270, 271)}
arch, readv, writev = NR[platform.machine()]
LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06
ALLOW, ERRNO_EPERM, KILL = 0x7FFF0000, 0x00050000 | 1, 0x80000000
prog = [
    (LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
    (JEQ_K, 1, 0, arch),
    (RET_K, 0, 0, KILL),
    (LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    (JEQ_K, 2, 0, readv),
    (JEQ_K, 1, 0, writev),
    (RET_K, 0, 0, ALLOW),
    (RET_K, 0, 0, ERRNO_EPERM),
]
filt = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in prog))
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = SockFprog(len(prog), ctypes.addressof(filt))
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or \
   libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0):
    sys.exit(f"no_cma.py: seccomp: {os.strerror(ctypes.get_errno())}")
os.execvp(sys.argv[1], sys.argv[1:])
