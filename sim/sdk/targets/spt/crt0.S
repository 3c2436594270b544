/* spt entry: RSP = mem - 8, RDI = &boot info (0x11000). */
    .section .text.start, "ax", @progbits
    .globl _start
    .type _start, @function
_start:
    andq $-16, %rsp
    xorl %ebp, %ebp
    call sdk_spt_start       /* never returns */
1:  jmp 1b
    .size _start, . - _start

    .section .note.GNU-stack, "", @progbits
