#include "nabla.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(int argc, char **argv) {
    long R = argc > 1 ? atol(argv[1]) : 64, C = 1024; int reps = 400;
    nb_init(NULL);
    nb_tensor *x = nb_randn(NB_SHAPE(R, C), NB_F32, 1);
    const char *names[4] = {"sum dim1", "sum dim0", "amax dim1", "mean dim1"};
    for (int w = 0; w < 4; w++) {
        double best = 1e18;
        for (int r = 0; r < reps; r++) { nb_scope_begin(); double t0 = now();
            if (w == 0) nb_sum(x, (int[]){1}, 1, false); else if (w == 1) nb_sum(x, (int[]){0}, 1, false);
            else if (w == 2) nb_max(x, (int[]){1}, 1, false); else nb_mean(x, (int[]){1}, 1, false);
            double d = now() - t0; nb_scope_end(); if (d < best) best = d; }
        printf("%s (%ld, %ld): %.2f us, %.1f GB/s\n", names[w], R, C, best / 1e3, R * C * 4 / best);
    }
}
