/* tern: the client program's commands. Each takes argc/argv with argv[0] the command name. */
#ifndef TERN_TERN_H
#define TERN_TERN_H

int cmd_account(int argc, char **argv);          /* cmd_account.c: add|list|show|remove|test */
int cmd_send(int argc, char **argv);             /* cmd_send.c */
int cmd_fetch(int argc, char **argv);            /* cmd_fetch.c */
int cmd_watch(int argc, char **argv);            /* cmd_watch.c */
int cmd_list(int argc, char **argv);             /* cmd_read.c */
int cmd_show(int argc, char **argv);             /* cmd_read.c */
int cmd_search(int argc, char **argv);           /* cmd_read.c */
int cmd_save_attachments(int argc, char **argv); /* cmd_read.c */
int cmd_import(int argc, char **argv);           /* cmd_read.c */
int cmd_export(int argc, char **argv);           /* cmd_read.c */
int cmd_shell(int argc, char **argv);            /* shell.c */

#endif
