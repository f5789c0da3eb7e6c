/* push: placeholder until it lands. */
typedef int push_placeholder;
