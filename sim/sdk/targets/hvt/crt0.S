/* hvt entry: RSP = mem - 8, RDI = &boot info (0x10000), interrupts off.
 * Also the exception stubs: each pushes a zero error code when the CPU
 * pushes none, then its vector, so s5_hvt_trap sees one frame layout. */
    .section .text.start, "ax", @progbits
    .globl _start
    .type _start, @function
_start:
    andq $-16, %rsp
    xorl %ebp, %ebp          /* end of the frame-pointer chain */
    call sdk_hvt_start       /* never returns */
1:  hlt
    jmp 1b
    .size _start, . - _start

    .text
.macro TRAP vec, has_code
    .globl s5_trap_\vec
s5_trap_\vec:
    .if \has_code == 0
    pushq $0
    .endif
    pushq $\vec
    jmp s5_trap_common
.endm

    TRAP 0, 0
    TRAP 1, 0
    TRAP 2, 0
    TRAP 3, 0
    TRAP 4, 0
    TRAP 5, 0
    TRAP 6, 0
    TRAP 7, 0
    TRAP 8, 1
    TRAP 9, 0
    TRAP 10, 1
    TRAP 11, 1
    TRAP 12, 1
    TRAP 13, 1
    TRAP 14, 1
    TRAP 15, 0
    TRAP 16, 0
    TRAP 17, 1
    TRAP 18, 0
    TRAP 19, 0
    TRAP 20, 0

s5_trap_common:
    movq %rsp, %rdi          /* frame: vector, error code, rip, cs, rflags, rsp, ss */
    andq $-16, %rsp
    call s5_hvt_trap         /* never returns */
2:  hlt
    jmp 2b

    .section .rodata
    .globl s5_trap_stubs
    .p2align 3
s5_trap_stubs:
    .quad s5_trap_0, s5_trap_1, s5_trap_2, s5_trap_3, s5_trap_4, s5_trap_5, s5_trap_6
    .quad s5_trap_7, s5_trap_8, s5_trap_9, s5_trap_10, s5_trap_11, s5_trap_12, s5_trap_13
    .quad s5_trap_14, s5_trap_15, s5_trap_16, s5_trap_17, s5_trap_18, s5_trap_19, s5_trap_20

    .section .note.GNU-stack, "", @progbits
