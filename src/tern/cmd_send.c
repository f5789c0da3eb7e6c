/* tern send: compose a message (or take one whole from stdin with --raw), send it through the
 * account's SMTP server and keep a copy in the local Sent folder.
 * Exit codes: 0 sent, 1 error (said on stderr), 2 usage. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/smtp_client.h"
#include "lib/json.h"
#include "lib/util.h"
#include "tern/accounts.h"
#include "tern/compose.h"
#include "tern/localstore.h"
#include "tern/tern.h"

/* Bodies and raw messages read from files or stdin are capped here. */
#define SEND_INPUT_MAX ((size_t)64 * 1024 * 1024)

struct send_args {
	const char **to, **cc, **bcc, **attach;
	size_t nto, ncc, nbcc, nattach;
	const char *subject, *text, *html, *account;
	bool raw, json;
};

static void
send_usage(FILE *fp)
{
	fputs("usage: tern send --to ADDR [--to ...] [--cc ADDR ...] [--bcc ADDR ...]\n"
	      "                 --subject TEXT [--text FILE|-] [--html FILE] [--attach FILE ...]\n"
	      "                 [--account NAME] [--json]\n"
	      "       tern send --raw [--to ADDR ...] [--account NAME] [--json] < message.eml\n"
	      "\n"
	      "Composes a message and sends it through the account's SMTP server; a copy goes to\n"
	      "the local Sent folder.\n"
	      "  --to, --cc, --bcc ADDR  recipients, repeatable; \"Name <a@b>\" and lists work.\n"
	      "                          Bcc recipients never appear in the headers.\n"
	      "  --subject TEXT          the subject (UTF-8; encoded per RFC 2047 when needed)\n"
	      "  --text FILE|-           the plain-text body (- reads stdin)\n"
	      "  --html FILE             an HTML body; with --text both go as alternatives\n"
	      "  --attach FILE           attach a file (base64, type from its extension)\n"
	      "  --account NAME          the account to send from (default: the default one)\n"
	      "  --raw                   send the complete message on stdin as it is, like\n"
	      "                          sendmail -t: recipients from its To, Cc and Bcc headers\n"
	      "                          plus any --to; the Bcc header is removed\n"
	      "  --json                  print the result as a JSON object\n"
	      "\n"
	      "Exit status: 0 sent, 1 error, 2 usage.\n",
	      fp);
}

/* Matches "--opt VALUE" or "--opt=VALUE": 1 with *value_r, 0 when not this option, -1 when
 * the value is missing. */
static int
send_opt(int argc, char **argv, int *i, const char *opt, const char **value_r)
{
	size_t len = strlen(opt);

	if (strncmp(argv[*i], opt, len) != 0)
		return 0;
	if (argv[*i][len] == '=') {
		*value_r = argv[*i] + len + 1;
		return 1;
	}
	if (argv[*i][len] != '\0')
		return 0;
	if (*i + 1 >= argc) {
		fprintf(stderr, "tern send: %s needs a value\n", opt);
		return -1;
	}
	*value_r = argv[++*i];
	return 1;
}

/* Parses the command line: 0, 1 when --help was shown, 2 on a usage error. */
static int
send_parse(int argc, char **argv, struct send_args *args)
{
	const char *single_opts[] = {"--subject", "--text", "--html", "--account"};
	const char **single_slots[] = {&args->subject, &args->text, &args->html, &args->account};
	const char *list_opts[] = {"--to", "--cc", "--bcc", "--attach"};
	const char **lists[] = {args->to, args->cc, args->bcc, args->attach};
	size_t *counts[] = {&args->nto, &args->ncc, &args->nbcc, &args->nattach};

	for (int i = 1; i < argc; i++) {
		const char *value = NULL;
		int m = 0;

		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			send_usage(stdout);
			return 1;
		}
		if (strcmp(argv[i], "--raw") == 0) {
			args->raw = true;
			continue;
		}
		if (strcmp(argv[i], "--json") == 0) {
			args->json = true;
			continue;
		}
		for (size_t k = 0; k < 4 && m == 0; k++) {
			m = send_opt(argc, argv, &i, list_opts[k], &value);
			if (m > 0)
				lists[k][(*counts[k])++] = value;
		}
		for (size_t k = 0; k < 4 && m == 0; k++)
			m = send_opt(argc, argv, &i, single_opts[k], single_slots[k]);
		if (m < 0)
			return 2;
		if (m == 0) {
			fprintf(stderr, "tern send: unexpected argument '%s'\n", argv[i]);
			send_usage(stderr);
			return 2;
		}
	}
	if (args->raw) {
		if (args->subject != NULL || args->text != NULL || args->html != NULL ||
		    args->nattach > 0 || args->ncc > 0 || args->nbcc > 0) {
			fputs("tern send: --raw takes the whole message from stdin; only --to, "
			      "--account and --json go with it\n",
			      stderr);
			return 2;
		}
		return 0;
	}
	if (args->nto + args->ncc + args->nbcc == 0) {
		fputs("tern send: no recipients: give --to, --cc or --bcc\n", stderr);
		return 2;
	}
	if (args->subject == NULL) {
		fputs("tern send: --subject is required (it may be \"\")\n", stderr);
		return 2;
	}
	if (args->html != NULL && strcmp(args->html, "-") == 0 && args->text != NULL &&
	    strcmp(args->text, "-") == 0) {
		fputs("tern send: only one of --text and --html can read stdin\n", stderr);
		return 2;
	}
	return 0;
}

/* Reads a whole file ("-" for stdin) into a malloc'ed buffer; -1 after printing why. */
static int
send_read_input(const char *path, char **data_r, size_t *len_r)
{
	bool is_stdin = strcmp(path, "-") == 0;
	int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0, cap = 65536;
	char *data;

	if (fd < 0) {
		fprintf(stderr, "tern send: cannot read %s: %s\n", path, strerror(errno));
		return -1;
	}
	data = xmalloc(cap + 1);
	for (;;) {
		ssize_t r;

		if (len == cap) {
			if (cap >= SEND_INPUT_MAX) {
				fprintf(stderr, "tern send: %s is larger than 64 MiB\n",
				        is_stdin ? "stdin" : path);
				goto fail;
			}
			cap *= 2;
			data = xrealloc(data, cap + 1);
		}
		r = read(fd, data + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "tern send: cannot read %s: %s\n",
			        is_stdin ? "stdin" : path, strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (!is_stdin)
		close(fd);
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return 0;
fail:
	if (!is_stdin)
		close(fd);
	free(data);
	return -1;
}

/* Builds the message from the arguments (or stdin with --raw); -1 after printing why. */
static int
send_compose(const struct send_args *args, const struct account *a, struct compose_message **msg_r)
{
	char *text = NULL, *html = NULL, error[1024];
	size_t text_len = 0, html_len = 0;
	int ret;

	if (args->raw) {
		if (send_read_input("-", &text, &text_len) < 0)
			return -1;
		ret = compose_raw(text, text_len, a->address, args->to, args->nto, msg_r, error,
		                  sizeof(error));
	} else {
		struct compose_request req = {
		    .from_address = a->address,
		    .from_name = a->display_name,
		    .to = args->to,
		    .nto = args->nto,
		    .cc = args->cc,
		    .ncc = args->ncc,
		    .bcc = args->bcc,
		    .nbcc = args->nbcc,
		    .subject = args->subject,
		    .attachments = args->attach,
		    .nattachments = args->nattach,
		};
		if ((args->text != NULL && send_read_input(args->text, &text, &text_len) < 0) ||
		    (args->html != NULL && send_read_input(args->html, &html, &html_len) < 0)) {
			free(text);
			return -1;
		}
		req.text = text;
		req.text_len = text_len;
		req.html = html;
		req.html_len = html_len;
		ret = compose_build(&req, msg_r, error, sizeof(error));
	}
	free(text);
	free(html);
	if (ret < 0)
		fprintf(stderr, "tern send: %s\n", error);
	return ret;
}

/* Connects, logs in and sends; -1 after printing the server's reason. */
static int
send_smtp(const struct account *a, const struct compose_message *msg)
{
	struct smtp_client_options options;
	struct smtp_client *client = NULL;
	char password[256], error[1024], hp[300];
	int ret = -1;

	if (a->insecure)
		fprintf(stderr,
		        "tern: warning: account %s does not verify certificates "
		        "(--insecure)\n",
		        a->name);
	if (a->smtp.security == CONN_SECURITY_NONE)
		fprintf(stderr, "tern: warning: account %s sends without TLS (security none)\n",
		        a->name);
	if (account_password(a, password, sizeof(password), error, sizeof(error)) < 0) {
		fprintf(stderr, "tern send: account %s: %s\n", a->name, error);
		return -1;
	}
	memset(&options, 0, sizeof(options));
	account_conn_options(a, &a->smtp, &options.conn);
	if (password[0] != '\0') {
		options.user = a->user[0] != '\0' ? a->user : a->address;
		options.password = password;
	}
	accounts_format_server(&a->smtp, hp, sizeof(hp));
	if (smtp_client_open(&options, &client, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern send: %s: %s\n", hp, error);
		goto out;
	}
	if (smtp_client_send(client, msg->sender, (const char *const *)msg->rcpts, msg->nrcpts,
	                     msg->data, msg->len, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern send: not sent: %s\n", error);
		smtp_client_close(&client);
		goto out;
	}
	smtp_client_close(&client);
	ret = 0;
out:
	explicit_bzero(password, sizeof(password));
	return ret;
}

/* Keeps a copy in the local Sent folder; 1 with *id_r, or -1 with error. */
static int
send_store_copy(const struct tern_paths *paths, const struct account *a,
                const struct compose_message *msg, int64_t *id_r, char *error, size_t errsize)
{
	struct lstore_source source = {
	    .account = a->name, .folder = "Sent", .remote_key = NULL, .flags = LSTORE_FLAG_SEEN};
	struct lstore *store = NULL;
	struct lstore_new *new = NULL;
	int fd = -1, ret;

	if (lstore_open(paths->data_dir, &store, error, errsize) < 0)
		return -1;
	if (lstore_new_begin(store, &new, &fd, error, errsize) < 0) {
		lstore_close(&store);
		return -1;
	}
	if (write_full(fd, msg->data, msg->len) < 0) {
		snprintf(error, errsize, "cannot write the copy: %s", strerror(errno));
		lstore_new_abort(&new);
		lstore_close(&store);
		return -1;
	}
	ret = lstore_new_commit(store, &new, &source, id_r, error, errsize);
	lstore_close(&store);
	return ret < 0 ? -1 : 1;
}

/* Prints the result as one JSON object. */
static void
send_print_json(const struct account *a, const struct compose_message *msg, const char *hp,
                int64_t stored_id)
{
	fputs("{\"sent\": true, \"account\": ", stdout);
	json_write_string(stdout, a->name);
	fputs(", \"server\": ", stdout);
	json_write_string(stdout, hp);
	fputs(", \"from\": ", stdout);
	json_write_string(stdout, msg->sender);
	fputs(", \"recipients\": [", stdout);
	for (size_t i = 0; i < msg->nrcpts; i++) {
		fputs(i ? ", " : "", stdout);
		json_write_string(stdout, msg->rcpts[i]);
	}
	fputs("], \"message_id\": ", stdout);
	if (msg->message_id != NULL)
		json_write_string(stdout, msg->message_id);
	else
		fputs("null", stdout);
	printf(", \"size\": %zu, \"sent_copy_id\": ", msg->len);
	if (stored_id > 0)
		printf("%" PRId64 "}\n", stored_id);
	else
		fputs("null}\n", stdout);
}

int
cmd_send(int argc, char **argv)
{
	struct send_args args;
	struct tern_paths paths;
	struct account *list = NULL;
	const struct account *a;
	struct compose_message *msg = NULL;
	size_t n = 0;
	int64_t stored_id = 0;
	char error[1024], hp[300];
	int r, ret = 1;

	memset(&args, 0, sizeof(args));
	args.to = xcalloc((size_t)argc, sizeof(char *));
	args.cc = xcalloc((size_t)argc, sizeof(char *));
	args.bcc = xcalloc((size_t)argc, sizeof(char *));
	args.attach = xcalloc((size_t)argc, sizeof(char *));
	r = send_parse(argc, argv, &args);
	if (r != 0) {
		ret = r == 1 ? 0 : 2;
		goto out;
	}
	if (tern_paths_get(&paths, error, sizeof(error)) < 0 ||
	    accounts_load(&paths, &list, &n, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern send: %s\n", error);
		goto out;
	}
	a = accounts_find(list, n, args.account, error, sizeof(error));
	if (a == NULL) {
		fprintf(stderr, "tern send: %s\n", error);
		goto out;
	}
	if (a->smtp.host[0] == '\0') {
		fprintf(stderr,
		        "tern send: account %s has no SMTP server: remove it and add it again "
		        "with --smtp HOST:PORT or --provider\n",
		        a->name);
		goto out;
	}
	if (send_compose(&args, a, &msg) < 0 || send_smtp(a, msg) < 0)
		goto out;
	accounts_format_server(&a->smtp, hp, sizeof(hp));
	/* The mail is gone: a failure to keep the copy is reported but is not a send failure,
	 * or a script would send it again. */
	if (send_store_copy(&paths, a, msg, &stored_id, error, sizeof(error)) < 0) {
		fprintf(stderr, "tern send: warning: sent, but no copy was kept in Sent: %s\n",
		        error);
		stored_id = 0;
	}
	if (args.json)
		send_print_json(a, msg, hp, stored_id);
	else
		printf("sent to %zu recipient%s via %s\n", msg->nrcpts, msg->nrcpts == 1 ? "" : "s",
		       hp);
	ret = 0;
out:
	compose_message_free(&msg);
	if (list != NULL)
		explicit_bzero(list, n * sizeof(*list));
	free(list);
	free(args.to);
	free(args.cc);
	free(args.bcc);
	free(args.attach);
	return ret;
}
