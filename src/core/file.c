/*
 * file.c - replacing a file's contents atomically (see file.h).
 *
 * The temporary file lives in the target's directory so that rename() stays
 * within one filesystem and is atomic; its name starts with a dot so that
 * tools listing the directory pass over it if we die before removing it.
 */
#include "core/file.h"

#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int moat_write_full(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	ssize_t k;

	while (n) {
		k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k == 0)
			errno = EIO;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* The directory part of path ("." if none), owned; NULL if out of memory. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

void moat_sync_dir_of(const char *path)
{
	char *dir = dir_of(path);
	int fd = open(dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	free(dir);
}

int moat_file_replace(const char *path, const void *data, size_t n, char *err, size_t errlen)
{
	char *dir = dir_of(path), *tmp = NULL;
	const char *base = strrchr(path, '/');
	struct stat st;
	int fd = -1, rc = MOAT_EIO;

	base = base ? base + 1 : path;
	if (!dir || asprintf(&tmp, "%s/.%s.XXXXXX", dir, base) < 0) {
		tmp = NULL;
		errno = ENOMEM;
		goto fail;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		free(tmp);
		tmp = NULL;
		goto fail;
	}
	if (fchmod(fd, 0600) < 0 || (stat(path, &st) == 0 && fchown(fd, st.st_uid, st.st_gid) < 0 &&
				     errno != EPERM))
		goto fail;
	if (moat_write_full(fd, data, n) < 0 || fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	free(tmp);
	tmp = NULL;
	moat_sync_dir_of(path); /* best effort: the rename is done */
	rc = 0;
fail:
	if (rc < 0)
		moat_set_err(err, errlen, "%s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	if (tmp)
		unlink(tmp);
	free(tmp);
	free(dir);
	return rc;
}
