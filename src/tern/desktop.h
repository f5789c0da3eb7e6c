/* desktop: desktop notifications for tern watch, through libnotify, so any freedesktop.org
 * notification daemon (org.freedesktop.Notifications on the session bus) shows them: GNOME,
 * KDE, dunst, mako, xfce4-notifyd...
 *
 * Nothing here is needed to watch mail: every failure (no session bus, no notification daemon)
 * comes back as an error for the caller to mention once. */
#ifndef TERN_DESKTOP_H
#define TERN_DESKTOP_H

#include <stddef.h>

struct desktop;

/* Prepares notifications for app_name (libnotify's notify_init; no bus traffic yet). Never
 * NULL. */
struct desktop *desktop_new(const char *app_name);
/* Shows one notification: title as the summary, body as the body (escaped when the daemon takes
 * markup, so a subject cannot format or hide text). Blocks until the daemon answers (D-Bus
 * default timeout). Returns 0, or -1 with error ("Cannot autolaunch D-Bus without X11
 * $DISPLAY", "The name org.freedesktop.Notifications was not provided by any .service files"). */
int desktop_notify(struct desktop *desktop, const char *title, const char *body, char *error,
                   size_t errsize);
void desktop_free(struct desktop **desktop);

#endif
