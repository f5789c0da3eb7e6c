/* desktop: one libnotify notification per call. libnotify talks to the session bus through
 * GDBus (its own worker thread); notify_notification_show is a synchronous D-Bus call, so no
 * GLib main loop is needed for fire-and-forget notifications. */
#include "tern/desktop.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnotify/notify.h>

#include "lib/util.h"

#define DESKTOP_TEXT_MAX 1024 /* bytes of title or body sent; longer text is cut */

struct desktop {
	char app_name[64];
	bool initialized;
	bool caps_known, markup; /* the daemon's "body-markup" capability */
};

struct desktop *
desktop_new(const char *app_name)
{
	struct desktop *d = xcalloc(1, sizeof(*d));

	str_copy(d->app_name, app_name, sizeof(d->app_name));
	return d;
}

/* Copies s into a buffer of size bytes, cut on a UTF-8 character boundary. */
static void
desktop_cut(char *out, size_t size, const char *s)
{
	size_t len = str_copy(out, s, size);

	if (len < size)
		return;
	len = size - 1;
	while (len > 0 && ((unsigned char)out[len] & 0xc0) == 0x80)
		len--;
	out[len] = '\0';
}

/* Asks the daemon once whether the body is markup (then <, > and & must be escaped). */
static void
desktop_caps(struct desktop *d)
{
	GList *caps = notify_get_server_caps();

	if (caps == NULL)
		return; /* no answer: ask again next time */
	d->caps_known = true;
	for (GList *l = caps; l != NULL; l = l->next)
		if (l->data != NULL && strcmp(l->data, "body-markup") == 0)
			d->markup = true;
	g_list_free_full(caps, g_free);
}

int
desktop_notify(struct desktop *d, const char *title, const char *body, char *error, size_t errsize)
{
	char t[DESKTOP_TEXT_MAX], b[DESKTOP_TEXT_MAX];
	NotifyNotification *n;
	GError *gerror = NULL;
	gchar *escaped = NULL;
	gboolean ok;

	if (!d->initialized) {
		if (!notify_init(d->app_name)) {
			snprintf(error, errsize, "libnotify could not be initialized");
			return -1;
		}
		d->initialized = true;
	}
	if (!d->caps_known)
		desktop_caps(d);
	desktop_cut(t, sizeof(t), title);
	desktop_cut(b, sizeof(b), body);
	if (d->markup)
		escaped = g_markup_escape_text(b, -1);
	n = notify_notification_new(t, escaped != NULL ? escaped : b, "mail-message-new");
	notify_notification_set_category(n, "email.arrived");
	notify_notification_set_urgency(n, NOTIFY_URGENCY_NORMAL);
	notify_notification_set_hint(n, "desktop-entry", g_variant_new_string("tern"));
	ok = notify_notification_show(n, &gerror);
	if (!ok)
		snprintf(error, errsize, "%s",
		         gerror != NULL && gerror->message != NULL
		             ? gerror->message
		             : "the notification was not shown");
	if (gerror != NULL)
		g_error_free(gerror);
	g_object_unref(G_OBJECT(n));
	g_free(escaped);
	return ok ? 0 : -1;
}

void
desktop_free(struct desktop **dp)
{
	struct desktop *d = *dp;

	if (d == NULL)
		return;
	if (d->initialized)
		notify_uninit();
	free(d);
	*dp = NULL;
}
