#include "nabla.h"
#include <stdio.h>
#include <time.h>
extern int nb__cs_stream;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
int main(void) {
    nb_init(NULL);
    nb_tensor *x = nb_randn(NB_SHAPE(64, 1, 28, 28), NB_F32, 1), *w = nb_randn(NB_SHAPE(32, 1, 5, 5), NB_F32, 2),
              *b = nb_randn(NB_SHAPE(32), NB_F32, 3);
    nb_conv_opts o = {.padding = {2, 2}};
    double t[2] = {1e9, 1e9};
    for (int r = 0; r < 60; r++) for (int s = 0; s < 2; s++) {
        nb__cs_stream = s; nb_scope_begin(); double t0 = now(); nb_conv2d(x, w, b, &o); double d = now() - t0; nb_scope_end();
        if (d < t[s]) t[s] = d; }
    printf("min ms: prefetchw %.3f stream %.3f\n", t[0], t[1]);
}
