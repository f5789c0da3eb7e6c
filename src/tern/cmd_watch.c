/* cmd_watch: placeholder until tern watch lands. */
typedef int cmd_watch_placeholder;
