/*
 * file.h - replacing a file's contents atomically.
 *
 * Files moat rewrites while running (passwords, bans) must never be seen half
 * written, by a reader or after a crash: they are written beside the old one
 * and renamed over it.
 */
#ifndef MOAT_CORE_FILE_H
#define MOAT_CORE_FILE_H

#include <stddef.h>

/*
 * Replaces the contents of path with data[0..n): a temporary file
 * ".BASE.XXXXXX" in the same directory (mode 0600, given the old file's owner
 * and group where we may), write, fsync, rename over path, then a best-effort
 * fsync of the directory. path is the file itself, not a symlink to it.
 * Returns 0, or MOAT_EIO with "PATH: reason" in err (if err && errlen); on
 * failure path is unchanged and the temporary file removed.
 */
int moat_file_replace(const char *path, const void *data, size_t n, char *err, size_t errlen);

/* Writes all of p[0..n) to fd, retrying on EINTR. Returns 0, or -1 with errno set. */
int moat_write_full(int fd, const void *p, size_t n);

/* Best effort: fsyncs the directory holding path, so a new name in it survives a crash. */
void moat_sync_dir_of(const char *path);

#endif
