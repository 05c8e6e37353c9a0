#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "send/stripe.h"
#include "util/harden.h"
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

	err[0] = '\0';
	s->cfg = config_load(path, err, sizeof(err));
	if (s->cfg == NULL)
		goto fail;
	s->rules = rule_set_new(s->cfg, err, sizeof(err));
	if (s->rules == NULL)
		goto fail;
	if (log_level_parse(s->cfg->agent.log_level, &level) == 0)
		log_set_level(level);
	return 0;
fail:
	fprintf(stderr, "%s\n", err);
	cli_setup_free(s);
	return -1;
}

int cli_process_setup(void)
{
	char err[256] = "";

	if (harden_process(err, sizeof(err)) != 0) {
		fprintf(stderr, "logmeter: %s\n", err);
		return -1;
	}
	stripe_key_take_env();
	return 0;
}

void cli_process_end(void)
{
	stripe_key_forget();
}

int cli_preflight(const struct config *cfg, char *err, size_t errlen)
{
	char key[STRIPE_KEY_MAX];
	int rc;

	if (harden_check_state_dir(cfg->agent.state_dir, 1, err, errlen) != 0)
		return -1;
	rc = stripe_key_load(cfg, key, sizeof(key), err, errlen);
	explicit_bzero(key, sizeof(key));
	return rc;
}
