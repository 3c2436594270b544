/* The three notes of a Solo5 image, each first in its own PT_NOTE segment:
 * OpenBSD (keeps OpenBSD from exec'ing it), the Solo5 ABI note (target from
 * SOLO5_TARGET, version 2) and the device manifest. The build puts a
 * generated solo5_manifest.inc on the include path when the app declares
 * devices; otherwise the manifest declares none. */
#ifndef SOLO5_TARGET
#error "SOLO5_TARGET must be defined (1 = hvt, 2 = spt)"
#endif

    .section .note.openbsd.ident, "a", @note
    .p2align 2
    .long 8, 4, 1            /* namesz, descsz, type */
    .asciz "OpenBSD"
    .long 0

    .section .note.solo5.abi, "a", @note
    .p2align 2
    .long 6, 16, 0x31494241  /* "Solo5\0", 16 bytes, ABI1 */
    .asciz "Solo5"
    .p2align 2
    .long SOLO5_TARGET, 2, 0, 0

    .section .note.solo5.manifest, "a", @note
    .p2align 3
#if __has_include("solo5_manifest.inc")
#include "solo5_manifest.inc"
#else
    .long 6, 116, 0x3154464d /* "Solo5\0", 4 + 8 + 104 bytes, MFT1 */
    .asciz "Solo5"
    .p2align 2
    .long 0                  /* padding: the manifest itself is 8-aligned */
    .long 1, 1               /* version 1, one entry */
    .fill 68, 1, 0           /* entry 0: no name, */
    .long 0x40000000         /* type RESERVED_FIRST, */
    .fill 32, 1, 0           /* union, hostfd, attached, padding */
#endif

    .section .note.GNU-stack, "", @progbits
