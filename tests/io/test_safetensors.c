/* test_safetensors.c — state dicts and safetensors checkpoints: round trips,
 * a file written by PyTorch, atomic replacement under a crash, and hostile
 * files (each rejected with a clear message, no crash, no leak). */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char st_dir[256];

static void st_setup(void) {
    nb_init(NULL);
    snprintf(st_dir, sizeof st_dir, "/tmp/nb_st_XXXXXX");
    cr_assert(mkdtemp(st_dir));
}
static void st_teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", st_dir);
    cr_assert_eq(system(cmd), 0);
}
static const char *st_path(const char *name) {
    static char p[400];
    snprintf(p, sizeof p, "%s/%s", st_dir, name);
    return p;
}

TestSuite(safetensors, .init = st_setup, .fini = st_teardown);

Test(safetensors, round_trip_every_dtype_and_shape) {
    nb_scope_begin();
    nb_state_dict *sd = nb_state_dict_new();
    nb_tensor *w = nb_randn(NB_SHAPE(4, 3), NB_F32, 1);
    nb_state_dict_set(sd, "layers.0.weight", w);
    nb_state_dict_set(sd, "layers.0.bias", nb_randn(NB_SHAPE(3), NB_F64, 2));
    nb_state_dict_set(sd, "step", nb_scalar_dtype(12345678901LL, NB_I64));
    nb_state_dict_set(sd, "mask", nb_full(NB_SHAPE(2, 2), NB_BOOL, 1));
    nb_state_dict_set(sd, "empty", nb_zeros(NB_SHAPE(0, 5), NB_F32));
    nb_state_dict_set(sd, "wt", nb_transpose(w, 0, 1));   /* non-contiguous: written in logical order */
    nb_state_dict_set(sd, "step", nb_scalar_dtype(42, NB_I64));   /* replaces */
    cr_assert_eq(nb_state_dict_size(sd), 6);
    const char *meta[] = {"format", "nabla \"test\"", NULL};
    cr_assert_eq(nb_save_safetensors(st_path("a.safetensors"), sd, meta), 0, "%s", nb_last_error());
    nb_state_dict *r = nb_load_safetensors(st_path("a.safetensors"));
    cr_assert(r, "%s", nb_last_error());
    cr_assert_eq(nb_state_dict_size(r), 6);
    for (int i = 0; i < 6; i++) {
        const char *name = nb_state_dict_name(sd, i);
        nb_tensor *a = nb_state_dict_tensor(sd, i), *b = nb_state_dict_get(r, name);
        cr_assert(b, "%s missing", name);
        cr_assert_eq(nb_dtype(a), nb_dtype(b), "%s dtype", name);
        cr_assert_eq(tu_max_abs_diff(a, b), 0.0, "%s values", name);
        cr_assert_str_eq(nb_state_dict_name(r, i), name, "order kept");
    }
    cr_assert_eq(nb_item(nb_state_dict_get(r, "step")), 42.0);
    nb_state_dict_free(r);
    nb_state_dict_free(sd);
    nb_scope_end();
}

Test(safetensors, reads_a_file_written_by_pytorch) {
    nb_scope_begin();
    nb_state_dict *r = nb_load_safetensors(NB_TEST_DATA_DIR "/../fixtures/torch_written.safetensors");
    cr_assert(r, "%s", nb_last_error());
    const double w[6] = {-0.5, -0.25, 0, 0.25, 0.5, 0.75}, b[2] = {0.25, -1.5};
    char msg[256];
    cr_assert(tu_check_close(nb_state_dict_get(r, "fc.weight"), NB_SHAPE(2, 3), w, 0, 0, msg, sizeof msg), "%s", msg);
    cr_assert(tu_check_close(nb_state_dict_get(r, "fc.bias"), NB_SHAPE(2), b, 0, 0, msg, sizeof msg), "%s", msg);
    cr_assert_eq(nb_dtype(nb_state_dict_get(r, "steps")), NB_I64);
    cr_assert_eq(nb_item(nb_state_dict_get(r, "steps")), 7.0);
    nb_tensor *m = nb_state_dict_get(r, "mask");
    cr_assert(nb_dtype(m) == NB_BOOL && nb_numel(m) == 3);
    cr_assert(((bool *)nb_data(m))[0] && !((bool *)nb_data(m))[1]);
    nb_tensor *t = nb_state_dict_get(r, "table");
    cr_assert(nb_dtype(t) == NB_F64 && nb_shape(t)[0] == 4 && nb_shape(t)[1] == 3);
    cr_assert_eq(nb_get(t, (int64_t[]){3, 1}), 3.5);
    nb_state_dict_free(r);
    nb_scope_end();
}

/* A crash in the middle of a save (SIGKILL at random moments) leaves the
 * previous checkpoint or the new one, complete: never a torn file. */
Test(safetensors, crash_mid_save_keeps_previous_checkpoint) {
    nb_scope_begin();
    const char *path = st_path("ckpt.safetensors");
    nb_state_dict *old = nb_state_dict_new();
    nb_state_dict_set(old, "w", nb_full(NB_SHAPE(1000), NB_F32, 1.0));
    cr_assert_eq(nb_save_safetensors(path, old, NULL), 0);
    nb_state_dict *big = nb_state_dict_new();
    nb_state_dict_set(big, "w", nb_full(NB_SHAPE(8 << 20), NB_F32, 2.0));   /* 32 MB */
    for (int trial = 0; trial < 6; trial++) {
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            nb_save_safetensors(path, big, NULL);
            _exit(0);
        }
        usleep((useconds_t)(trial * 4000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        nb_state_dict *r = nb_load_safetensors(path);
        cr_assert(r, "trial %d: the checkpoint is unreadable after a crash: %s", trial, nb_last_error());
        nb_tensor *w = nb_state_dict_get(r, "w");
        cr_assert(nb_numel(w) == 1000 || nb_numel(w) == (8 << 20), "trial %d: torn file", trial);
        double v = ((float *)nb_data(w))[nb_numel(w) - 1];
        cr_assert(v == (nb_numel(w) == 1000 ? 1.0 : 2.0), "trial %d: torn data", trial);
        nb_state_dict_free(r);
        /* put the old one back for the next trial */
        cr_assert_eq(nb_save_safetensors(path, old, NULL), 0);
    }
    nb_state_dict_free(big);
    nb_state_dict_free(old);
    nb_scope_end();
}

Test(safetensors, failed_save_leaves_target_untouched) {
    nb_scope_begin();
    nb_state_dict *sd = nb_state_dict_new();
    nb_state_dict_set(sd, "x", nb_ones(NB_SHAPE(2), NB_F32));
    cr_assert_eq(nb_save_safetensors("/nonexistent-dir/x.safetensors", sd, NULL), NB_EIO);
    cr_assert(strstr(nb_last_error(), "/nonexistent-dir/x.safetensors"));
    nb_state_dict_set(sd, "__metadata__", nb_ones(NB_SHAPE(1), NB_F32));
    cr_assert_eq(nb_save_safetensors(st_path("m.safetensors"), sd, NULL), NB_EINVAL);
    cr_assert_eq(access(st_path("m.safetensors"), F_OK), -1, "nothing written");
    cr_assert_eq(nb_save_safetensors(NULL, sd, NULL), NB_ENULLARG);
    cr_assert_eq(nb_state_dict_set(sd, NULL, NULL), NB_ENULLARG);
    nb_state_dict_free(sd);
    nb_state_dict_free(NULL);
    nb_scope_end();
}

/* ---- hostile files ---- */
static void st_write_raw(const char *name, const char *header, const void *data, size_t dn, int64_t claimed) {
    FILE *f = fopen(st_path(name), "wb");
    cr_assert(f);
    uint64_t n = claimed >= 0 ? (uint64_t)claimed : strlen(header);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(n >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (dn) fwrite(data, 1, dn, f);
    fclose(f);
}

static void st_expect_reject(const char *name, int code, const char *needle) {
    nb_clear_error();
    nb_state_dict *r = nb_load_safetensors(st_path(name));
    cr_assert_null(r, "%s: accepted", name);
    cr_assert_eq(nb_last_error_code(), code, "%s: %s (%s)", name, nb_error_name(nb_last_error_code()), nb_last_error());
    cr_assert(strstr(nb_last_error(), needle), "%s: message \"%s\" lacks \"%s\"", name, nb_last_error(), needle);
    cr_assert(strstr(nb_last_error(), name), "%s: message does not name the file", name);
}

Test(safetensors, rejects_hostile_files) {
    float d[4] = {1, 2, 3, 4};
    const char *ok_hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    st_write_raw("ok.st", ok_hdr, d, 16, -1);
    nb_state_dict *r = nb_load_safetensors(st_path("ok.st"));
    cr_assert(r, "control file: %s", nb_last_error());
    nb_state_dict_free(r);

    st_write_raw("hdrlen.st", ok_hdr, d, 16, 1 << 20);
    st_expect_reject("hdrlen.st", NB_EIO, "past the end");
    st_write_raw("huge.st", ok_hdr, d, 16, (int64_t)1 << 62);
    st_expect_reject("huge.st", NB_EIO, "past the end");
    FILE *f = fopen(st_path("short.st"), "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    st_expect_reject("short.st", NB_EIO, "8-byte");
    st_write_raw("json.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}", d, 16, -1);
    st_expect_reject("json.st", NB_EIO, "JSON");
    st_write_raw("json2.st", "[1,2,3]", NULL, 0, -1);
    st_expect_reject("json2.st", NB_EIO, "not a JSON object");
    st_write_raw("dtype.st", "{\"a\":{\"dtype\":\"Q7\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", d, 16, -1);
    st_expect_reject("dtype.st", NB_EDTYPE, "unknown dtype 'Q7'");
    st_write_raw("f16.st", "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,4],\"data_offsets\":[0,16]}}", d, 16, -1);
    st_expect_reject("f16.st", NB_EDTYPE, "unsupported dtype 'F16'");
    st_write_raw("range.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,32]}}", d, 16, -1);
    st_expect_reject("range.st", NB_EIO, "truncated");
    st_write_raw("trunc.st", ok_hdr, d, 12, -1);
    st_expect_reject("trunc.st", NB_EIO, "truncated");
    st_write_raw("mismatch.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,16]}}", d, 16, -1);
    st_expect_reject("mismatch.st", NB_EIO, "needs 24 bytes");
    st_write_raw("overlap.st",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]}}",
                 d, 16, -1);
    st_expect_reject("overlap.st", NB_EIO, "overlaps");
    st_write_raw("hole.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", d, 16, -1);
    st_expect_reject("hole.st", NB_EIO, "hole");
    st_write_raw("dup.st",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                 d, 16, -1);
    st_expect_reject("dup.st", NB_EIO, "twice");
    st_write_raw("neg.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2,2],\"data_offsets\":[0,16]}}", d, 16, -1);
    st_expect_reject("neg.st", NB_EIO, "invalid size");
    st_write_raw("missing.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2]}}", d, 16, -1);
    st_expect_reject("missing.st", NB_EIO, "data_offsets");
    uint8_t bools[2] = {1, 7};
    st_write_raw("bool.st", "{\"m\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}", bools, 2, -1);
    st_expect_reject("bool.st", NB_EIO, "0 or 1");
    char deep[200] = "";
    for (int i = 0; i < 40; i++) strcat(deep, "[");
    st_write_raw("deep.st", deep, NULL, 0, -1);
    st_expect_reject("deep.st", NB_EIO, "nested too deeply");
    st_write_raw("bigshape.st",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[281474976710656,281474976710656],\"data_offsets\":[0,16]}}", d,
                 16, -1);
    st_expect_reject("bigshape.st", NB_EIO, "too large");
    nb_clear_error();
    cr_assert_null(nb_load_safetensors(st_path("does-not-exist.st")));
    cr_assert_eq(nb_last_error_code(), NB_EIO);
    cr_assert_null(nb_load_safetensors(NULL));
    cr_assert_eq(nb_last_error_code(), NB_ENULLARG);
}
