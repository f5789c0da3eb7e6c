/* imap_url: IMAP URLs (RFC 5092) as CATENATE (RFC 4469) uses them: a message of the same account,
 * or a part of one, named by mailbox, UIDVALIDITY, UID, section and partial:
 *
 *   /INBOX;UIDVALIDITY=1234/;UID=7/;SECTION=1.2/;PARTIAL=0.1024
 *   imap://alice@mail.example.org/Sent%20Items;UIDVALIDITY=9/;UID=3
 *
 * The parser works on the whole URL (one IMAP argument, already assembled by imap_parser) and
 * never reads past len; it refuses what the server cannot honour (URLAUTH, search or list URLs,
 * a missing UID) as invalid. Percent-escapes are undone: the mailbox comes out as the UTF-8 name
 * the store uses (RFC 5092 9), the section as IMAP section text ("HEADER.FIELDS (From)"). */
#ifndef TERN_IMAP_URL_H
#define TERN_IMAP_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAP_URL_MAX 4096         /* longer URLs are refused */
#define IMAP_URL_MAILBOX_MAX 1024 /* a decoded mailbox name, with its NUL */
#define IMAP_URL_SECTION_MAX 1024 /* a decoded section, with its NUL */
#define IMAP_URL_USER_MAX 256

struct imap_url {
	char user[IMAP_URL_USER_MAX]; /* "" when the URL has no server part or no user */
	bool absolute;                /* imap://server/... */
	char mailbox[IMAP_URL_MAILBOX_MAX];
	uint32_t uidvalidity; /* 0: not given */
	uint32_t uid;
	char section[IMAP_URL_SECTION_MAX]; /* "" for the whole message */
	bool partial;
	uint32_t partial_offset;
	uint32_t partial_len; /* 0: to the end */
};

/* Parses url[0..len). 0, or -1 with a static *error_r. */
int imap_url_parse(const char *url, size_t len, struct imap_url *u, const char **error_r);

#endif
