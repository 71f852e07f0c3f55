#include "nabla.h"
#include <stdio.h>
#include <string.h>
#include <time.h>
extern int nb__cs_chunks;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
/* conv1 (LeNet): forward alone and forward + weight/bias gradient, NB_CS_CHUNKS 16 / 32 / 64 alternated */
int main(void) {
    nb_init(NULL);
    nb_tensor *x = nb_randn(NB_SHAPE(64, 1, 28, 28), NB_F32, 1), *w = nb_randn(NB_SHAPE(32, 1, 5, 5), NB_F32, 2),
              *b = nb_randn(NB_SHAPE(32), NB_F32, 3), *g = nb_randn(NB_SHAPE(64, 32, 28, 28), NB_F32, 4);
    nb_set_requires_grad(w, true); nb_set_requires_grad(b, true);
    nb_conv_opts o = {.padding = {2, 2}};
    static const int ch[3] = {16, 32, 64};
    double tf[3] = {1e9, 1e9, 1e9}, tb[3] = {1e9, 1e9, 1e9};
    float ref[800]; int same = 1;
    for (int r = 0; r < 80; r++) for (int s = 0; s < 3; s++) {
        nb__cs_chunks = ch[s]; nb_scope_begin();
        double t0 = now(); nb_tensor *y = nb_conv2d(x, w, b, &o); double t1 = now();
        nb_backward(y, g); double t2 = now();
        if (r == 0 && s == 0) memcpy(ref, nb_data(nb_grad(w)), sizeof ref);
        if (r == 0 && s > 0 && memcmp(ref, nb_data(nb_grad(w)), sizeof ref)) same = 0;   /* different chunks: not bitwise */
        nb_zero_grad(w); nb_zero_grad(b);
        nb_scope_end();
        if (t1 - t0 < tf[s]) tf[s] = t1 - t0;
        if (t2 - t1 < tb[s]) tb[s] = t2 - t1; }
    printf("min ms fwd / bwd: chunks16 %.3f / %.3f  chunks32 %.3f / %.3f  chunks64 %.3f / %.3f (bits same: %d)\n", tf[0], tb[0], tf[1], tb[1], tf[2], tb[2], same);
}
