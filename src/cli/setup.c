#include <stdio.h>

#include "cli/cli.h"
#include "util/log.h"

void cli_setup_free(struct cli_setup *s)
{
	rule_set_free(s->rules);
	config_free(s->cfg);
	s->rules = NULL;
	s->cfg = NULL;
}

int cli_setup_load(struct cli_setup *s, const char *path)
{
	char err[CONFIG_ERR_MAX];
	enum log_level level;
	enum log_format format = LOG_FORMAT_TEXT;

	err[0] = '\0';
	s->cfg = config_load(path, err, sizeof(err));
	if (s->cfg == NULL)
		goto fail;
	s->rules = rule_set_new(s->cfg, err, sizeof(err));
	if (s->rules == NULL)
		goto fail;
	if (log_level_parse(s->cfg->agent.log_level, &level) == 0)
		log_set_level(level);
	/* The option table allows only what log_format_parse takes. */
	(void)log_format_parse(s->cfg->agent.log_format, &format);
	log_setup(format);
	return 0;
fail:
	log_plain(LOG_LVL_ERR, err);
	cli_setup_free(s);
	return -1;
}
