/* libFuzzer harness: the customer map loader (core/custmap.c) on any file, then lookups of
 * slices of the same bytes. A customer map is configuration, trusted, but an admin may fill it
 * from anywhere: it must be refused with PATH:LINE or loaded, never crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/custmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[1024] = "";
	struct custmap *map;
	int fd = memfd_create("custmap", MFD_CLOEXEC);

	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	map = custmap_load(path, err, sizeof(err));
	if (map == NULL && err[0] == '\0')
		abort(); /* a refusal always says why */
	if (map != NULL) {
		size_t lines = 1;

		for (size_t i = 0; i < size; i++)
			lines += data[i] == '\n';
		if (custmap_size(map) > lines)
			abort();
		/* Every slice up to each comma, as a key. */
		for (size_t start = 0, i = 0; i < size; i++) {
			if (data[i] == '\n') {
				start = i + 1;
			} else if (data[i] == ',') {
				const char *id =
				    custmap_lookup(map, (const char *)data + start, i - start);

				if (id != NULL && strlen(id) > 100)
					abort();
			}
		}
	}
	custmap_free(map);
	close(fd);
	return 0;
}
