/* webhook: placeholder until it lands. */
typedef int webhook_placeholder;
