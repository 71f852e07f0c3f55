/* cpu.c — which vector ISAs this CPU and OS let nabla use.
 *
 * A feature counts only when the CPU reports it (cpuid) and the OS saves the
 * register state it needs across context switches (XCR0, read with xgetbv,
 * which exists only when CPUID.1:ECX.OSXSAVE is set):
 *   AVX2+FMA  needs XCR0 bits 1 (SSE) and 2 (AVX/YMM);
 *   AVX-512   needs also bits 5 (opmask), 6 (ZMM0-15 upper) and 7 (ZMM16-31).
 * nb_init calls nb__cpu_detect once; the kernel registry caps the ISA by it.
 * On other architectures every flag is false and the vendor is "unknown".
 */
#include "runtime/runtime.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>

#define BIT(n) (1u << (n))

/* CPUID.1:ECX */
#define CPUID1_ECX_FMA BIT(12)
#define CPUID1_ECX_OSXSAVE BIT(27)
#define CPUID1_ECX_AVX BIT(28)
/* CPUID.(7,0):EBX */
#define CPUID7_EBX_AVX2 BIT(5)
#define CPUID7_EBX_AVX512F BIT(16)
#define CPUID7_EBX_AVX512DQ BIT(17)
#define CPUID7_EBX_AVX512BW BIT(30)
#define CPUID7_EBX_AVX512VL BIT(31)
/* CPUID.(7,0):ECX */
#define CPUID7_ECX_AVX512VNNI BIT(11)
/* CPUID.(7,1):EAX */
#define CPUID71_EAX_AVX512BF16 BIT(5)
/* XCR0 state components */
#define XCR0_YMM (BIT(1) | BIT(2))
#define XCR0_ZMM (XCR0_YMM | BIT(5) | BIT(6) | BIT(7))

/* XCR0 (ecx = 0); call only when OSXSAVE is set, else it faults. */
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Copies the 48-byte brand string, without leading or trailing blanks. */
static void read_brand(char brand[49]) {
    unsigned r[12] = {0};
    unsigned a, b, c, d;
    brand[0] = 0;
    if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x80000004u) return;
    for (unsigned i = 0; i < 3; i++)
        __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
    char raw[49];
    memcpy(raw, r, 48);
    raw[48] = 0;
    const char *s = raw;
    while (*s == ' ') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == 0)) n--;
    memcpy(brand, s, n);
    brand[n] = 0;
}

void nb__cpu_detect(nb_cpu_features *f) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    memset(f, 0, sizeof *f);
    strcpy(f->vendor, "unknown");
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    unsigned max_leaf = a;
    memcpy(f->vendor + 0, &b, 4);   /* "Genu" "ineI" "ntel": ebx, edx, ecx */
    memcpy(f->vendor + 4, &d, 4);
    memcpy(f->vendor + 8, &c, 4);
    f->vendor[12] = 0;
    read_brand(f->brand);

    if (max_leaf < 1 || !__get_cpuid(1, &a, &b, &c, &d)) return;
    unsigned ecx1 = c;
    uint64_t xcr0 = (ecx1 & CPUID1_ECX_OSXSAVE) ? read_xcr0() : 0;
    bool ymm_ok = (xcr0 & XCR0_YMM) == XCR0_YMM;
    bool zmm_ok = (xcr0 & XCR0_ZMM) == XCR0_ZMM;

    if (max_leaf < 7 || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    unsigned ebx7 = b, ecx7 = c, max_sub7 = a;

    f->avx2_fma = ymm_ok && (ecx1 & CPUID1_ECX_AVX) && (ecx1 & CPUID1_ECX_FMA) &&
                  (ebx7 & CPUID7_EBX_AVX2);
    if (!zmm_ok) return;
    f->avx512f = (ebx7 & CPUID7_EBX_AVX512F) != 0;
    f->avx512dq = f->avx512f && (ebx7 & CPUID7_EBX_AVX512DQ);
    f->avx512bw = f->avx512f && (ebx7 & CPUID7_EBX_AVX512BW);
    f->avx512vl = f->avx512f && (ebx7 & CPUID7_EBX_AVX512VL);
    f->avx512_vnni = f->avx512f && (ecx7 & CPUID7_ECX_AVX512VNNI);
    if (max_sub7 >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d))
        f->avx512_bf16 = f->avx512f && (a & CPUID71_EAX_AVX512BF16);
}

#else /* not x86 */

void nb__cpu_detect(nb_cpu_features *f) {
    memset(f, 0, sizeof *f);
    strcpy(f->vendor, "unknown");
}

#endif
