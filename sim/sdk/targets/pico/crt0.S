/* pico entry: RSP = stack_top (16-byte aligned), RDI = &struct pico_boot_info.
 * The call pushes a return address, so sdk_pico_start sees the stack as the
 * SysV ABI promises a function (RSP + 8 aligned to 16). */
    .section .text.start, "ax", @progbits
    .globl _start
    .type _start, @function
_start:
    xorl %ebp, %ebp          /* end of the frame-pointer chain */
    call sdk_pico_start      /* never returns */
1:  hlt
    jmp 1b
    .size _start, . - _start

    .section .note.GNU-stack, "", @progbits
