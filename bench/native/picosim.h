/* Host shim: lets an SDK example build as a normal Linux program, so the
 * benchmark can time the same source natively. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
