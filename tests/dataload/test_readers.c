/* test_readers.c — the IDX, CSV and .npy readers and the .npy writer.
 *
 * Good files come from tests/fixtures/dataload/gen_fixtures.py (numpy and
 * Python's gzip wrote them; the values are the formulas listed there). Bad
 * files (truncated, wrong magic, hostile sizes) are made by each test in a
 * temporary directory from the good ones. The real Fashion-MNIST files are
 * read by one test, skipped when the Debian package is not installed.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

#define FIX NB_TEST_DATA_DIR "/../fixtures/dataload/"
#define FASHION "/usr/share/datasets/fashion-mnist/"

/* ---- a temporary directory per test ---- */

static char tmpdir[64];

static void tmp_setup(void) {
    nb_init(NULL);
    strcpy(tmpdir, "/tmp/nb_dataload_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void tmp_teardown(void) {
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') {
                snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(tmpdir);
}

static const char *tmp(const char *name) {
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ & 3];
    snprintf(b, 512, "%s/%s", tmpdir, name);
    return b;
}

/* Whole file into a malloc'd buffer. */
static unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile g = gzopen(path, "wb");
    cr_assert_not_null(g);
    cr_assert_eq(gzwrite(g, data, (unsigned)n), (int)n);
    gzclose(g);
}

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

/* Asserts the last call failed with code and a message containing needle. */
#define assert_err(rc, code, needle)                                                                         \
    do {                                                                                                     \
        cr_assert_eq((rc), (code), "got %s, expected %s (%s)", nb_error_name(rc), nb_error_name(code),     \
                     nb_last_error());                                                                       \
        cr_assert(strstr(nb_last_error(), (needle)), "message '%s' lacks '%s'", nb_last_error(), (needle)); \
    } while (0)

static void assert_values(const nb_tensor *t, nb_dtype dt, nb_dims shape, const double *exp) {
    cr_assert_not_null(t, "%s", nb_last_error());
    cr_assert_eq(nb_dtype(t), dt, "dtype %s", nb_dtype_name(nb_dtype(t)));
    char msg[256];
    cr_assert(tu_check_close(t, shape, exp, 0, 0, msg, sizeof msg), "%s", msg);
}

/* ---- .npy ---- */

Test(data_npy, reads_every_dtype_numpy_wrote, .init = tmp_setup, .fini = tmp_teardown) {
    nb_scope_begin();
    assert_values(nb_load_npy(FIX "f32_2x3.npy"), NB_F32, NB_SHAPE(2, 3), (double[]){-1, -0.5, 0, 0.5, 1, 1.5});
    assert_values(nb_load_npy(FIX "f32_2x3_v2.npy"), NB_F32, NB_SHAPE(2, 3), (double[]){-1, -0.5, 0, 0.5, 1, 1.5});
    assert_values(nb_load_npy(FIX "f64_4.npy"), NB_F64, NB_SHAPE(4), (double[]){0.1, -2.5, 1e300, -0.0});
    double i64[6];
    for (int i = 0; i < 6; i++) i64[i] = i * -1000000007.0;
    assert_values(nb_load_npy(FIX "i64_3x1x2.npy"), NB_I64, NB_SHAPE(3, 1, 2), i64);
    assert_values(nb_load_npy(FIX "bool_5.npy"), NB_BOOL, NB_SHAPE(5), (double[]){1, 0, 0, 1, 1});
    assert_values(nb_load_npy(FIX "f32_scalar.npy"), NB_F32, NB_SHAPE0, (double[]){3.25});
    nb_tensor *e = nb_load_npy(FIX "f64_0x3.npy");
    cr_assert_not_null(e, "%s", nb_last_error());
    cr_assert_eq(nb_ndim(e), 2);
    cr_assert_eq(nb_shape(e)[0], 0);
    cr_assert_eq(nb_shape(e)[1], 3);
    nb_scope_end();
}

/* nabla's file must be byte for byte what numpy.save wrote for the same array. */
static void assert_same_bytes(const char *ours, const char *theirs) {
    size_t n1, n2;
    unsigned char *a = read_file(ours, &n1), *b = read_file(theirs, &n2);
    cr_assert_eq(n1, n2, "%s has %zu bytes, numpy's %s %zu", ours, n1, theirs, n2);
    cr_assert(memcmp(a, b, n1) == 0, "%s differs from numpy's %s", ours, theirs);
    free(a);
    free(b);
}

Test(data_npy, write_read_round_trip_matches_numpy_bytes, .init = tmp_setup, .fini = tmp_teardown) {
    static const char *names[] = {"f32_2x3.npy", "f64_4.npy", "i64_3x1x2.npy", "bool_5.npy", "f32_scalar.npy",
                                  "f64_0x3.npy"};
    nb_scope_begin();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char src[512];
        snprintf(src, sizeof src, FIX "%s", names[i]);
        nb_tensor *t = nb_load_npy(src);
        cr_assert_not_null(t, "%s", nb_last_error());
        cr_assert_eq(nb_save_npy(tmp(names[i]), t), 0, "%s", nb_last_error());
        assert_same_bytes(tmp(names[i]), src);
        nb_tensor *back = nb_load_npy(tmp(names[i]));
        cr_assert_not_null(back);
        cr_assert_eq(nb_dtype(back), nb_dtype(t));
        cr_assert_eq(tu_max_abs_diff(back, t), 0, "%s round trip", names[i]);
    }
    /* a strided view is written in C order: numpy's file of f32.T */
    nb_tensor *t = nb_transpose(nb_load_npy(FIX "f32_2x3.npy"), 0, 1);
    cr_assert_not_null(t);
    cr_assert_not(nb_is_contiguous(t));
    cr_assert_eq(nb_save_npy(tmp("t.npy"), t), 0, "%s", nb_last_error());
    assert_same_bytes(tmp("t.npy"), FIX "f32_2x3_t.npy");
    nb_scope_end();
}

Test(data_npy, save_replaces_atomically_and_leaves_no_temporary, .init = tmp_setup, .fini = tmp_teardown) {
    nb_scope_begin();
    nb_tensor *a = nb_arange(0, 10, 1, NB_F32), *b = nb_arange(0, 1000, 1, NB_F64);
    cr_assert_eq(nb_save_npy(tmp("x.npy"), a), 0);
    cr_assert_eq(nb_save_npy(tmp("x.npy"), b), 0);
    cr_assert_eq(tu_max_abs_diff(nb_load_npy(tmp("x.npy")), b), 0);
    int files = 0;
    DIR *d = opendir(tmpdir);
    for (struct dirent *e; (e = readdir(d));) files += e->d_name[0] != '.';
    closedir(d);
    cr_assert_eq(files, 1, "only x.npy is left, no temporary file");
    /* a failing write leaves nothing behind and says why */
    assert_err(nb_save_npy(tmp("no/such/dir/x.npy"), a), NB_EIO, "temporary file");
    assert_err(nb_save_npy(NULL, a), NB_ENULLARG, "path");
    assert_err(nb_save_npy(tmp("y.npy"), NULL), NB_ENULLARG, "tensor");
    nb_scope_end();
}

Test(data_npy, rejects_unsupported_layouts_and_dtypes, .init = tmp_setup, .fini = tmp_teardown) {
    cr_assert_null(nb_load_npy(FIX "f32_fortran.npy"));
    assert_err(nb_last_error_code(), NB_EIO, "Fortran order");
    cr_assert_null(nb_load_npy(FIX "f32_bigendian.npy"));
    assert_err(nb_last_error_code(), NB_EDTYPE, "big-endian");
    cr_assert_null(nb_load_npy(FIX "i32_3.npy"));
    assert_err(nb_last_error_code(), NB_EDTYPE, "'<i4'");
    cr_assert_null(nb_load_npy(NULL));
    assert_err(nb_last_error_code(), NB_ENULLARG, "path");
    cr_assert_null(nb_load_npy(tmp("missing.npy")));
    assert_err(nb_last_error_code(), NB_EIO, "cannot open");
}

/* Writes the good f32_2x3.npy with the change `edit` applied at byte `at`
 * (or truncated to `keep` bytes when keep > 0), reads it, expects failure. */
static void bad_npy(size_t keep, size_t at, const char *edit, size_t edit_len, int code, const char *needle) {
    size_t n;
    unsigned char *b = read_file(FIX "f32_2x3.npy", &n);
    if (edit) memcpy(b + at, edit, edit_len);
    write_file(tmp("bad.npy"), b, keep ? keep : n);
    free(b);
    nb_tensor *t = nb_load_npy(tmp("bad.npy"));
    cr_assert_null(t, "a bad file (%s) was read", needle);
    assert_err(nb_last_error_code(), code, needle);
}

Test(data_npy, rejects_truncated_and_hostile_files, .init = tmp_setup, .fini = tmp_teardown) {
#define E(lit) lit, sizeof(lit) - 1
    /* header text: '{' at 10, 'descr' at 12, '<f4' at 21, 'False' at 44, '(2, 3)' at 60, '\n' at 127 */
    bad_npy(150, 0, NULL, 0, NB_EIO, "truncated");          /* data cut short */
    bad_npy(100, 0, NULL, 0, NB_EIO, "runs past the end");  /* header cut short */
    bad_npy(7, 0, NULL, 0, NB_EIO, "not a .npy file");      /* preamble cut short */
    bad_npy(0, 0, E("\x93NUMPX"), NB_EIO, "not a .npy file");
    bad_npy(0, 6, E("\x07"), NB_EIO, "version 7.0");
    bad_npy(0, 8, E("\xff\xff"), NB_EIO, "header length 65535");                     /* hostile header length */
    bad_npy(0, 6, E("\x02\x00\xff\xff\xff\x7f"), NB_EIO, "header length 2147483647"); /* 2.0, 2 GiB header */
    bad_npy(0, 8, E("\x00\x00"), NB_EIO, "malformed");                               /* empty header */
    bad_npy(0, 64, E("9"), NB_EIO, "truncated");    /* shape (2, 9): more data than the file has */
    bad_npy(0, 60, E("(1, 1, 1, 1, 1, 1, 1, 1, 1), }"), NB_EIO, "malformed");          /* 9 dims */
    bad_npy(0, 61, E("9999999999999999999999"), NB_EIO, "malformed");                  /* overflows int64 */
    bad_npy(0, 12, E("dascr"), NB_EIO, "unknown or repeated key");
    bad_npy(0, 10, E("["), NB_EIO, "start with '{'");
    bad_npy(0, 44, E("Maybe"), NB_EIO, "fortran_order");
    bad_npy(0, 22, E("x8"), NB_EDTYPE, "'<x8'");
    bad_npy(0, 127, E("!"), NB_EIO, "text follows");
    bad_npy(0, 30, E("\0"), NB_EIO, "NUL byte");
    /* one byte too many: not silently ignored */
    size_t n;
    unsigned char *b = read_file(FIX "f32_2x3.npy", &n);
    b = realloc(b, n + 1);
    b[n] = 0;
    write_file(tmp("big.npy"), b, n + 1);
    free(b);
    cr_assert_null(nb_load_npy(tmp("big.npy")));
    assert_err(nb_last_error_code(), NB_EIO, "oversized");
}

/* ---- IDX ---- */

static void expected_images(double *v, double scale) {
    for (int i = 0; i < 5 * 12; i++) v[i] = (i * 4 % 256) * scale;
}

Test(data_idx, reads_images_and_labels_plain_and_gzipped, .init = tmp_setup, .fini = tmp_teardown) {
    double v[60];
    nb_scope_begin();
    expected_images(v, 1.0 / 255.0);
    nb_tensor *a = nb_load_idx(FIX "images5.idx", NULL), *b = nb_load_idx(FIX "images5.idx.gz", NULL);
    cr_assert_not_null(a, "%s", nb_last_error());
    cr_assert_not_null(b, "%s", nb_last_error());
    char msg[256];
    cr_assert_eq(nb_dtype(a), NB_F32);
    cr_assert(tu_check_close(a, NB_SHAPE(5, 3, 4), v, 1e-6, 0, msg, sizeof msg), "%s", msg);
    cr_assert_eq(tu_max_abs_diff(a, b), 0, "gzipped and plain agree");
    expected_images(v, 1.0);
    assert_values(nb_load_idx(FIX "images5.idx.gz", &(nb_idx_opts){.raw = true}), NB_F32, NB_SHAPE(5, 3, 4), v);
    assert_values(nb_load_idx(FIX "labels5.idx.gz", NULL), NB_I64, NB_SHAPE(5), (double[]){1, 3, 5, 7, 9});
    assert_values(nb_load_idx(FIX "f32_2x2.idx", NULL), NB_F32, NB_SHAPE(2, 2), (double[]){1.5, -2, 0.25, 8});
    nb_scope_end();
}

/* The good images5.idx, edited at `at` and cut to `keep` bytes (0: whole),
 * written plain or gzipped; reading it must fail. */
static void bad_idx(size_t keep, size_t at, const char *edit, size_t edit_len, bool gz, const char *needle) {
    size_t n;
    unsigned char *b = read_file(FIX "images5.idx", &n);
    if (edit) memcpy(b + at, edit, edit_len);
    if (gz)
        write_gz(tmp("bad.idx.gz"), b, keep ? keep : n);
    else
        write_file(tmp("bad.idx"), b, keep ? keep : n);
    free(b);
    nb_tensor *t = nb_load_idx(tmp(gz ? "bad.idx.gz" : "bad.idx"), NULL);
    cr_assert_null(t, "a bad IDX file (%s) was read", needle);
    assert_err(nb_last_error_code(), NB_EIO, needle);
}

Test(data_idx, rejects_bad_files, .init = tmp_setup, .fini = tmp_teardown) {
    for (int gz = 0; gz <= 1; gz++) {
        bad_idx(70, 0, NULL, 0, gz, "truncated");                  /* data cut short */
        bad_idx(10, 0, NULL, 0, gz, "truncated in its header");    /* dims cut short */
        bad_idx(2, 0, NULL, 0, gz, "too short");
        bad_idx(0, 0, "\x00\x01\x08\x03", 4, gz, "not an IDX file");
        bad_idx(0, 2, "\x07", 1, gz, "not an IDX file");           /* unknown element type */
        bad_idx(0, 3, "\x00", 1, gz, "not an IDX file");           /* no dims */
        bad_idx(0, 3, "\x09", 1, gz, "not an IDX file");           /* 9 dims */
        bad_idx(0, 4, "\x00\x0f\x42\x40", 4, gz, "more than the file");   /* 1000000 images */
        bad_idx(0, 4, "\xff\xff\xff\xff", 4, gz, "more than the file");
        bad_idx(0, 4, "\x00\x00\x00\x04", 4, gz, "trailing bytes");       /* 4 images, 5 stored */
    }
    /* a gzip stream cut in the middle */
    size_t n;
    unsigned char *b = read_file(FIX "images5.idx.gz", &n);
    write_file(tmp("cut.idx.gz"), b, n - 12);
    free(b);
    cr_assert_null(nb_load_idx(tmp("cut.idx.gz"), NULL));
    cr_assert_eq(nb_last_error_code(), NB_EIO, "%s", nb_last_error());
    cr_assert_null(nb_load_idx(NULL, NULL));
    assert_err(nb_last_error_code(), NB_ENULLARG, "path");
    cr_assert_null(nb_load_idx(tmp("none.idx"), NULL));
    assert_err(nb_last_error_code(), NB_EIO, "cannot open");
    cr_assert_null(nb_load_idx(tmpdir, NULL));
    assert_err(nb_last_error_code(), NB_EIO, "cannot open");
}

Test(data_idx, real_fashion_mnist) {
    if (access(FASHION "train-images-idx3-ubyte.gz", R_OK) != 0) cr_skip_test("dataset-fashion-mnist not installed");
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *x = nb_load_idx(FASHION "train-images-idx3-ubyte.gz", NULL);
    nb_tensor *y = nb_load_idx(FASHION "train-labels-idx1-ubyte.gz", NULL);
    nb_tensor *tx = nb_load_idx(FASHION "t10k-images-idx3-ubyte.gz", NULL);
    nb_tensor *ty = nb_load_idx(FASHION "t10k-labels-idx1-ubyte.gz", NULL);
    cr_assert(x && y && tx && ty, "%s", nb_last_error());
    cr_assert_eq(nb_ndim(x), 3);
    cr_assert_eq(nb_shape(x)[0], 60000);
    cr_assert_eq(nb_shape(x)[1], 28);
    cr_assert_eq(nb_shape(x)[2], 28);
    cr_assert_eq(nb_shape(y)[0], 60000);
    cr_assert_eq(nb_shape(tx)[0], 10000);
    cr_assert_eq(nb_shape(ty)[0], 10000);
    const int64_t *lab = nb_data(y);
    int64_t count[10] = {0};
    for (int i = 0; i < 60000; i++) {
        cr_assert(lab[i] >= 0 && lab[i] <= 9);
        count[lab[i]]++;
    }
    for (int c = 0; c < 10; c++) cr_assert_eq(count[c], 6000, "Fashion-MNIST has 6000 of each class");
    const float *px = nb_data(x);
    float mn = 1, mx = 0;
    for (int64_t i = 0; i < nb_numel(x); i++) {
        mn = px[i] < mn ? px[i] : mn;
        mx = px[i] > mx ? px[i] : mx;
    }
    cr_assert(mn == 0.0f && mx == 1.0f, "pixels in [0, 1]: %g..%g", mn, mx);
    nb_scope_end();
}

/* ---- CSV ---- */

Test(data_csv, header_auto_label_column_and_dtypes, .init = tmp_setup, .fini = tmp_teardown) {
    write_text(tmp("a.csv"), "a,b,label,c\n1,2,0,3\n\n 4 , -5.5e1 ,2, 6\r\n7,8,1,9");
    nb_scope_begin();
    nb_tensor *x, *y;
    nb_csv_opts o = NB_CSV_OPTS_DEFAULT;
    o.label_column = 2;
    cr_assert_eq(nb_load_csv(tmp("a.csv"), &o, &x, &y), 0, "%s", nb_last_error());
    assert_values(x, NB_F32, NB_SHAPE(3, 3), (double[]){1, 2, 3, 4, -55, 6, 7, 8, 9});
    assert_values(y, NB_I64, NB_SHAPE(3), (double[]){0, 2, 1});
    /* the last column by default; F64; gzipped; no header */
    write_gz(tmp("b.csv.gz"), "0.1,2\n0.2,3\n", 12);
    o = NB_CSV_OPTS_DEFAULT;
    o.dtype = NB_F64;
    cr_assert_eq(nb_load_csv(tmp("b.csv.gz"), &o, &x, &y), 0, "%s", nb_last_error());
    assert_values(x, NB_F64, NB_SHAPE(2, 1), (double[]){0.1, 0.2});
    assert_values(y, NB_I64, NB_SHAPE(2), (double[]){2, 3});
    /* no label column: every column is a feature; header forced off */
    o = (nb_csv_opts){.header = 0, .label_column = NB_CSV_NO_LABEL, .delimiter = ';', .dtype = NB_F32};
    write_text(tmp("c.csv"), "1;2\n3;4\n");
    cr_assert_eq(nb_load_csv(tmp("c.csv"), &o, &x, NULL), 0, "%s", nb_last_error());
    assert_values(x, NB_F32, NB_SHAPE(2, 2), (double[]){1, 2, 3, 4});
    nb_scope_end();
}

static void bad_csv(const char *text, const nb_csv_opts *o, int code, const char *needle) {
    write_text(tmp("bad.csv"), text);
    nb_tensor *x = (nb_tensor *)1, *y = (nb_tensor *)1;
    int rc = nb_load_csv(tmp("bad.csv"), o, &x, &y);
    assert_err(rc, code, needle);
    cr_assert_null(x);
    cr_assert_null(y);
}

Test(data_csv, bad_input_names_line_and_column, .init = tmp_setup, .fini = tmp_teardown) {
    bad_csv("1,2,3\n4,x5,6\n", NULL, NB_EIO, "line 2 column 2: 'x5' is not a number");
    bad_csv("a,b\n1,2\n\n3,,4\n", NULL, NB_EIO, "line 4 has 3 cells; expected 2");
    bad_csv("1,2\n3,\n", NULL, NB_EIO, "line 2 column 2: '' is not a number");
    bad_csv("1,2.5\n", NULL, NB_EIO, "line 1 column 2: label 2.5 is not an integer");
    bad_csv("h1,h2\n", NULL, NB_EIO, "no data rows");
    bad_csv("", NULL, NB_EIO, "no data rows");
    bad_csv("5\n", NULL, NB_EIO, "no feature columns");
    bad_csv("1,2\n", &(nb_csv_opts){.header = 0, .label_column = 5, .delimiter = ','}, NB_EINVAL, "label column 5");
    bad_csv("1,2\n", &(nb_csv_opts){.header = 1, .label_column = -1, .delimiter = ',', .dtype = NB_I64}, NB_EDTYPE,
            "f32 or f64");
    bad_csv("1,1e999\n", &(nb_csv_opts){.header = 0, .label_column = 0, .delimiter = ','}, NB_EIO, "not a number");
    nb_tensor *x;
    assert_err(nb_load_csv(NULL, NULL, &x, NULL), NB_ENULLARG, "path");
    assert_err(nb_load_csv(tmp("bad.csv"), NULL, NULL, NULL), NB_ENULLARG, "features");
    assert_err(nb_load_csv(tmp("nope.csv"), NULL, &x, NULL), NB_EIO, "cannot open");
    /* a corrupt gzip stream */
    write_gz(tmp("z.csv.gz"), "1,2\n3,4\n5,6\n7,8\n", 16);
    size_t n;
    unsigned char *b = read_file(tmp("z.csv.gz"), &n);
    write_file(tmp("z.csv.gz"), b, n - 10);
    free(b);
    cr_assert_eq(nb_load_csv(tmp("z.csv.gz"), NULL, &x, NULL), NB_EIO, "%s", nb_last_error());
}

Test(data_csv, sklearn_digits_if_installed) {
    const char *p = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";
    if (access(p, R_OK) != 0) cr_skip_test("python3-sklearn not installed");
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *x, *y;
    cr_assert_eq(nb_load_csv(p, NULL, &x, &y), 0, "%s", nb_last_error());
    cr_assert_eq(nb_shape(x)[0], 1797);
    cr_assert_eq(nb_shape(x)[1], 64);
    cr_assert_eq(nb_shape(y)[0], 1797);
    nb_scope_end();
}
