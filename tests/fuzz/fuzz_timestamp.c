/* libFuzzer harness: timestamps taken from log lines (rule_parse_timestamp), not trusted: the
 * first byte picks a format (the examples' and the common ones) or, past them, takes the format
 * from the input up to its first newline; the rest is the text. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const formats[] = {
	    "%d/%b/%Y:%H:%M:%S %z", "%d/%b/%Y:%H:%M:%S", "epoch", "%b %d %H:%M:%S",
	    "%Y-%m-%dT%H:%M:%S%z",  "%Y-%m-%d %H:%M:%S", "%s"};
	const size_t n_formats = sizeof(formats) / sizeof(formats[0]);
	char format[128];
	const char *text;
	size_t len;
	int64_t out = 0;

	if (size < 1)
		return 0;
	setenv("TZ", "UTC", 0);
	if (data[0] < n_formats) {
		snprintf(format, sizeof(format), "%s", formats[data[0]]);
		text = (const char *)data + 1;
		len = size - 1;
	} else {
		const uint8_t *nl = memchr(data + 1, '\n', size - 1);
		size_t flen = nl != NULL ? (size_t)(nl - data - 1) : size - 1;

		if (flen >= sizeof(format) || memchr(data + 1, '\0', flen) != NULL || flen == 0)
			return 0;
		memcpy(format, data + 1, flen);
		format[flen] = '\0';
		text = (const char *)data + 1 + flen + (nl != NULL);
		len = size - 1 - flen - (nl != NULL);
	}
	/* Whatever the text: 0 or -1, and no read outside it (ASan says). */
	if (rule_parse_timestamp(format, text, len, 1700000000, &out) < -1)
		abort();
	return 0;
}
