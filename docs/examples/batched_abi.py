"""A variant of the pico ABI with a batched write (see docs/abi-variants.md).

    sim abi header --abi-module docs/examples/batched_abi.py
    sim build app.c -o app.elf --abi-module docs/examples/batched_abi.py
    sim boot app.elf --abi-module docs/examples/batched_abi.py
"""

from sim.libos.abi import Arg, Call, Dir
from sim.libos.pico_abi import IOVEC, PICO_ABI

STREAM_WRITEV = Call(
    50, "stream_writev",
    (Arg("handle", "handle", doc="a stream handle"),
     Arg("iov", "ptr", Dir.IN, length="iov_bytes", doc="array of struct pico_iovec"),
     Arg("iov_bytes", doc="16 x number of pieces (at most 64)")),
    "Write several buffers to a stream in one crossing; returns the bytes written.",
    family="streams", cost="copy", errors=("EBADH", "EFAULT", "EINVAL"), returns="count")

# Same name, so the generated header stays pico_abi.h and the SDK's code builds unchanged.
ABI = PICO_ABI.derive("pico", add=[STREAM_WRITEV], version=PICO_ABI.version + 1)


def HANDLERS(pico):
    """Handlers for the calls this variant adds; ``pico`` is the personality."""

    def stream_writev(handle: int, iov: bytes, iov_bytes: int) -> int:
        if iov_bytes % IOVEC.size or iov_bytes > 64 * IOVEC.size:
            return pico.error("EINVAL")
        total = 0
        for i in range(0, iov_bytes, IOVEC.size):
            piece = IOVEC.decode(iov[i:i + IOVEC.size])
            data = pico.read_guest(piece["buf"], piece["len"])  # checked like any pointer
            total += pico.write_stream(handle, data)
        return total

    return {"stream_writev": stream_writev}
