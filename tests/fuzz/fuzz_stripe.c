/* libFuzzer harness: the classification of Stripe's answers (stripe_classify), which are not
 * trusted: any status, Stripe-Should-Retry and Idempotent-Replayed headers, curl result,
 * Location and body. The first four bytes set those; the rest is the body. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "send/stripe.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const CURLcode codes[] = {
	    CURLE_OK,         CURLE_OK,         CURLE_OPERATION_TIMEDOUT, CURLE_COULDNT_CONNECT,
	    CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING,        CURLE_SSL_CONNECT_ERROR};
	struct stripe_response r;
	char reason[512];
	enum stripe_outcome o;

	if (size < 4)
		return 0;
	log_set_level(LOG_LVL_ERR);
	memset(&r, 0, sizeof(r));
	r.status = (long)(((unsigned)data[0] << 8 | data[1]) % 700);
	r.curl_code = codes[data[2] % (sizeof(codes) / sizeof(codes[0]))];
	r.should_retry = (int)(data[2] >> 3) % 3 - 1;
	r.replayed = (data[2] >> 5) & 1;
	r.identifier = (data[3] & 1) ? "lm1-0000000000000000000000000000000000000001" : NULL;
	r.location = (data[3] & 2) ? "https://login.example.com/portal" : NULL;
	r.body = (data[3] & 4) ? NULL : (const char *)data + 4;
	r.body_len = r.body != NULL ? size - 4 : 0;
	o = stripe_classify(&r, reason, sizeof(reason));
	if (o > STRIPE_REJECTED || memchr(reason, '\0', sizeof(reason)) == NULL)
		abort();
	/* A 2xx is delivered only if it carries the identifier sent (stripe.h: a NULL identifier
	 * is not checked, so there is nothing to hold it to). */
	if (o == STRIPE_DELIVERED && r.status >= 200 && r.status < 300 && r.identifier != NULL &&
	    (r.body == NULL ||
	     memmem(r.body, r.body_len, r.identifier, strlen(r.identifier)) == NULL))
		abort();
	return 0;
}
