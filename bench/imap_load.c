/* imap-load: placeholder until the IMAP load generator lands. */
#include <stdio.h>

int
main(void)
{
	fprintf(stderr, "imap-load: not built yet\n");
	return 1;
}
