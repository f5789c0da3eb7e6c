/* desktop: placeholder until it lands. */
typedef int desktop_placeholder;
