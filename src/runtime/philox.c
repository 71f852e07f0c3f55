/* philox.c — the Philox4x32-10 counter-based generator (Salmon, Moraes, Dror,
 * Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
 *
 * A block cipher-like bijection: a 128-bit counter and a 64-bit key give 128
 * random bits, with no state carried between calls. nb_rand/nb_randn draw
 * element i's bits from counter i (or i/4), so a value depends only on
 * (seed, i): never on the tensor's size, the thread count or the order in
 * which threads run. Ten rounds, each two 32x32->64 multiplies; the key is
 * bumped by the Weyl constants between rounds.
 *
 * Checked against the known-answer vectors of the Random123 distribution
 * (kat_vectors) in tests/runtime/test_random.c.
 */
#include "runtime/runtime.h"

#define PHILOX_M0 0xD2511F53u   /* round multipliers */
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u   /* key schedule (Weyl) constants */
#define PHILOX_W1 0xBB67AE85u
#define PHILOX_ROUNDS 10

/* The full 4-word-counter form, for the known-answer tests (whose counters
 * use all 128 bits). Internal; not in runtime.h, declared where it is used. */

void nb__philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        if (r > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* key = the seed's two 32-bit halves (low first); counter = {lo32, hi32, 0, 0}.
 * Cannot fail. */
void nb__philox(uint64_t seed, uint64_t counter, uint32_t out[4]) {
    const uint32_t ctr[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), 0, 0};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    nb__philox4x32_10(ctr, key, out);
}
