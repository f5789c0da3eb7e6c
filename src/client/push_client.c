/* push_client: placeholder until it lands. */
typedef int push_client_placeholder;
