/* libFuzzer harness: the configuration loader (config_load_text) on any text, as the main file
 * /fuzz/logmeter.conf (relative paths resolve there; nothing is read from it). A configuration
 * is trusted, but its loader must still refuse garbage with file:line errors, never crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char err[CONFIG_ERR_MAX];
	char *text = malloc(size + 1);
	struct config *cfg;

	if (text == NULL)
		return 0;
	log_set_level(LOG_LVL_ERR);
	memcpy(text, data, size);
	text[size] = '\0'; /* a NUL inside ends the text early, as in a C string */
	cfg = config_load_text(text, "/fuzz/logmeter.conf", err, sizeof(err));
	if (cfg == NULL && err[0] == '\0')
		abort(); /* a refusal always says why */
	config_free(cfg);
	free(text);
	return 0;
}
