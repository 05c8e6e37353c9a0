/* The yardstick of bench/send.sh: what libcurl alone spends per v1 meter event request, with no
 * spool, no answer parsing and no bookkeeping. It makes the requests logmeter's v1 sender makes
 * (POST /v1/billing/meter_events, the same headers and form body, keep-alive, one easy handle per
 * transfer slot reused, CONCURRENCY transfers in flight in one multi handle, curl_multi_poll
 * between them) for EVENTS meter events, and exits 0 only if Stripe (the double) answered 200 to
 * each. Identifiers are "floor-RUN-N", so that runs against one double do not collide.
 *
 * usage: send_floor URL KEY_FILE STRIPE_VERSION EVENTS CONCURRENCY RUN
 * Built and run by bench/send.sh; not part of logmeter. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct slot {
	CURL *easy;
	struct curl_slist idem; /* the Idempotency-Key line, chained before the shared headers */
	char idem_line[96];
	char form[512];
	char answer[4096]; /* kept as logmeter keeps it, not read */
	size_t answer_len;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct slot *x = ud;
	size_t len = size * n;

	if (len > sizeof(x->answer) - x->answer_len)
		len = sizeof(x->answer) - x->answer_len;
	memcpy(x->answer + x->answer_len, p, len);
	x->answer_len += len;
	return size * n;
}

/* The form body of logmeter's event_form_body_write: event_name, identifier, timestamp, the
 * customer and the value (a customer of 97, a value of 1 to 5,000). */
static int start(CURLM *multi, struct slot *x, const char *run, long i, long now)
{
	snprintf(x->idem_line, sizeof(x->idem_line), "Idempotency-Key: floor-%s-%ld", run, i);
	snprintf(x->form, sizeof(x->form),
	         "event_name=bandwidth_bytes&identifier=floor-%s-%ld&timestamp=%ld"
	         "&payload[stripe_customer_id]=ck_floor%ld&payload[value]=%ld",
	         run, i, now, i % 97, i % 5000 + 1);
	x->answer_len = 0;
	if (curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->form) != CURLE_OK ||
	    curl_multi_add_handle(multi, x->easy) != CURLM_OK)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	char key[256], auth[300], version[96];
	struct curl_slist *headers = NULL, *h;
	struct slot *slots = NULL;
	CURLM *multi = NULL;
	long events, conc, next = 0, done = 0, ok = 0, now = (long)time(NULL);
	FILE *f;
	int rc = 1;

	if (argc != 7) {
		fprintf(stderr,
		        "usage: send_floor URL KEY_FILE STRIPE_VERSION EVENTS CONCURRENCY RUN\n");
		return 2;
	}
	events = atol(argv[4]);
	conc = atol(argv[5]);
	f = fopen(argv[2], "r");
	if (f == NULL || fgets(key, sizeof(key), f) == NULL || events < 1 || conc < 1) {
		fprintf(stderr, "send_floor: no key in %s, or a bad count\n", argv[2]);
		if (f != NULL)
			fclose(f);
		return 2;
	}
	fclose(f);
	key[strcspn(key, "\r\n")] = '\0';
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 1;
	multi = curl_multi_init();
	slots = calloc((size_t)conc, sizeof(*slots));
	if (multi == NULL || slots == NULL)
		goto fail;
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, conc);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conc);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
	snprintf(version, sizeof(version), "Stripe-Version: %s", argv[3]);
	const char *lines[] = {auth, version, "User-Agent: send_floor",
	                       "Content-Type: application/x-www-form-urlencoded", "Expect:"};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		h = curl_slist_append(headers, lines[i]);
		if (h == NULL)
			goto fail;
		headers = h;
	}
	for (long k = 0; k < conc; k++) {
		struct slot *x = &slots[k];

		x->easy = curl_easy_init();
		if (x->easy == NULL)
			goto fail;
		x->idem.data = x->idem_line;
		x->idem.next = headers;
		curl_easy_setopt(x->easy, CURLOPT_URL, argv[1]);
		curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, &x->idem);
		curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, 30000L);
		curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
		curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
		if (next < events && start(multi, x, argv[6], next++, now) != 0)
			goto fail;
	}
	while (done < events) {
		int running, left;
		CURLMsg *m;

		if (curl_multi_perform(multi, &running) != CURLM_OK)
			goto fail;
		while ((m = curl_multi_info_read(multi, &left)) != NULL) {
			struct slot *x = NULL;
			long status = 0;

			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
			ok += m->data.result == CURLE_OK && status == 200;
			curl_multi_remove_handle(multi, m->easy_handle);
			done++;
			if (next < events && start(multi, x, argv[6], next++, now) != 0)
				goto fail;
		}
		if (done < events && curl_multi_poll(multi, NULL, 0, 1000, NULL) != CURLM_OK)
			goto fail;
	}
	printf("%ld requests, %ld answered 200\n", done, ok);
	rc = ok == events ? 0 : 1;
fail:
	for (long k = 0; slots != NULL && k < conc; k++)
		curl_easy_cleanup(slots[k].easy);
	free(slots);
	curl_slist_free_all(headers);
	curl_multi_cleanup(multi);
	curl_global_cleanup();
	return rc;
}
