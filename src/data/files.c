/* files.c — file helpers of the readers and writers: sizes, reading a whole
 * (possibly gzipped) file, and atomic writes through a temporary file.
 *
 * Atomic write: the data go to "<path>.tmp.<pid>.<n>" in the same directory
 * (so the rename stays on one file system), which is flushed, fsync'ed,
 * closed and renamed over path; the directory is then fsync'ed so the rename
 * itself is durable. Until the rename the previous file is untouched; after
 * a failure the temporary file is removed.
 */
#include "data/data.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

int64_t nb__data_file_size(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        return -1;
    }
    return (int64_t)st.st_size;
}

int nb__data_slurp(const char *who, const char *path, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    if (nb__data_file_size(path) < 0) return nb__err(NB_EIO, "%s: cannot open %s: %s", who, path, strerror(errno));
    gzFile gz = gzopen(path, "rb");
    if (!gz) return nb__err(NB_EIO, "%s: cannot open %s: %s", who, path, strerror(errno ? errno : ENOMEM));
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    if (!b) goto fail_nomem;
    for (;;) {
        if (n == cap) {
            if (cap > ((size_t)1 << 40)) {
                nb__err(NB_EIO, "%s: %s is too large (over 1 TiB)", who, path);
                goto fail_buf;
            }
            char *nbuf = realloc(b, cap * 2 + 1);
            if (!nbuf) goto fail_nomem;
            b = nbuf;
            cap *= 2;
        }
        size_t want = cap - n > (1u << 30) ? (1u << 30) : cap - n;
        int got = gzread(gz, b + n, (unsigned)want);
        if (got < 0) {
            int errnum;
            const char *msg = gzerror(gz, &errnum);
            nb__err(NB_EIO, "%s: %s is corrupt or truncated (%s)", who, path, msg);
            goto fail_buf;
        }
        if (got == 0) {
            int errnum;
            const char *msg = gzerror(gz, &errnum);
            if (errnum != Z_OK) {
                nb__err(NB_EIO, "%s: %s is corrupt or truncated (%s)", who, path, msg);
                goto fail_buf;
            }
            break;
        }
        n += (size_t)got;
    }
    gzclose_r(gz);
    b[n] = 0;
    *buf = b;
    *len = n;
    return 0;

fail_nomem:
    nb__err(NB_ENOMEM, "%s: out of memory reading %s", who, path);
fail_buf:
    free(b);
    gzclose_r(gz);
    return nb_last_error_code();
}

int nb__data_tmp_open(const char *who, const char *path, FILE **f, char **tmp) {
    static atomic_uint counter;
    *f = NULL;
    *tmp = NULL;
    size_t cap = strlen(path) + 64;
    char *name = malloc(cap);
    if (!name) return nb__err(NB_ENOMEM, "%s: out of memory", who);
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(name, cap, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
        fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int e = errno;
        free(name);
        return nb__err(NB_EIO, "%s: cannot create a temporary file next to %s: %s", who, path, strerror(e));
    }
    *f = fdopen(fd, "wb");
    if (!*f) {
        int e = errno;
        close(fd);
        unlink(name);
        free(name);
        return nb__err(NB_EIO, "%s: cannot open a stream on a temporary file for %s: %s", who, path, strerror(e));
    }
    *tmp = name;
    return 0;
}

/* fsync of the directory holding path: makes a rename durable. Best effort. */
static void sync_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

int nb__data_tmp_commit(const char *who, const char *path, FILE *f, char **tmp, bool ok) {
    int rc = 0;
    if (ok && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        rc = nb__err(NB_EIO, "%s: cannot write %s: %s", who, path, strerror(errno));
    if (fclose(f) != 0 && ok && !rc) rc = nb__err(NB_EIO, "%s: cannot write %s: %s", who, path, strerror(errno));
    if (ok && !rc && rename(*tmp, path) != 0)
        rc = nb__err(NB_EIO, "%s: cannot rename the temporary file to %s: %s", who, path, strerror(errno));
    if (!ok || rc)
        unlink(*tmp);
    else
        sync_dir(path);
    free(*tmp);
    *tmp = NULL;
    return rc;
}
