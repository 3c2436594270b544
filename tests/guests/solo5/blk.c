/* blk: writes a pattern over a whole block device, reads it back, checks
 * that bad requests are refused. Argument "fault": write, then fault. */
#include <picosim.h>
#include "solo5_dev.h"

static uint8_t buf[4096], back[4096];

static uint8_t pattern(uint64_t block, uint64_t i)
{
    return (uint8_t)(block * 7 + i + 0x5a);
}

static int fail(const char *why)
{
    printf("ABORT: %s\n", why);
    return 1;
}

int main(int argc, char **argv)
{
    printf("\n**** Solo5 standalone test_blk ****\n\n");
    uint64_t h;
    struct s5_block_info bi;
    if (s5_block_acquire("storage", &h, &bi) != S5_OK)
        return fail("no block device 'storage'");
    uint64_t bs = bi.block_size, blocks = bi.capacity / bs;
    if (bs > sizeof buf)
        return fail("block size too large");
    printf("storage: %u blocks of %u bytes\n", (unsigned)blocks, (unsigned)bs);
    for (uint64_t b = 0; b < blocks; b++) {
        for (uint64_t i = 0; i < bs; i++)
            buf[i] = pattern(b, i);
        if (s5_block_write(h, b * bs, buf, bs) != S5_OK)
            return fail("write failed");
    }
    if (argc > 0 && strcmp(argv[0], "fault") == 0) {
        printf("written; now faulting\n");
        *(volatile int *)0 = 1;
    }
    for (uint64_t b = 0; b < blocks; b++) {
        if (s5_block_read(h, b * bs, back, bs) != S5_OK)
            return fail("read failed");
        for (uint64_t i = 0; i < bs; i++)
            if (back[i] != pattern(b, i))
                return fail("data mismatch");
    }
    if (s5_block_write(h, bi.capacity, buf, bs) != S5_EINVAL)
        return fail("write past the end accepted");
    if (s5_block_read(h, 1, back, bs) != S5_EINVAL)
        return fail("unaligned read accepted");
    if (s5_block_read(h + 1, 0, back, bs) != S5_EINVAL)
        return fail("bad handle accepted");
    printf("SUCCESS\n");
    return 0;
}
