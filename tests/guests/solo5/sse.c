/* sse: floating point through SSE registers must compute exactly. */
#include <picosim.h>

typedef float v4f __attribute__((vector_size(16)));

__attribute__((noinline)) static double dot(const double *a, const double *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

int main(void)
{
    printf("\n**** Solo5 standalone test_fpu ****\n\n");
    volatile float a = 2.0f, b = 4.5f;
    float c = a * b;
    v4f x = {1.0f, 2.0f, 3.0f, 4.0f}, y = {0.5f, 0.25f, 2.0f, 8.0f};
    v4f z = x * y + x;
    double u[4] = {1.5, -2.0, 3.25, 0.125}, v[4] = {2.0, 0.5, 4.0, 16.0};
    double d = dot(u, v, 4);
    if (c != 9.0f || z[0] != 1.5f || z[1] != 2.5f || z[2] != 9.0f || z[3] != 36.0f || d != 17.0) {
        printf("ABORT: wrong results\n");
        return 1;
    }
    printf("SUCCESS\n");
    return 0;
}
