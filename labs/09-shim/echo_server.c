/* Lab 09: echo_server PORT -- a TCP echo server (RFC 862) in C.
 *
 *   gcc -Wall -O1 -o echo_server echo_server.c
 *   ./echo_server 7007                          # on the kernel's TCP
 *   tcplab run -- ./echo_server 7007            # on the tcplab stack (the shim)
 *   python3 -m stack.labkit test 09 --impl .    # the step-by-step tests (both programs)
 *
 * What it must do (the tests check each point):
 *   1. socket(AF_INET, SOCK_STREAM, 0); setsockopt SO_REUSEADDR (so a restart does not
 *      fail with "Address already in use" while old connections sit in TIME-WAIT);
 *   2. bind to 0.0.0.0:PORT (htons!) and listen();
 *   3. print "listening on port PORT\n" on stdout and fflush(stdout) -- the tests and
 *      the lab wait for that line;
 *   4. forever: accept() one connection; read() and write() back everything until
 *      read() returns 0 (the client's FIN: it will send no more), then close() -- which
 *      sends our FIN; then accept the next one. A connection after another is enough.
 *
 * Careful: write() may write fewer bytes than asked -- loop until all are written.
 * Ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)) so that a client that resets does not kill
 * the server. Report errors with perror() on stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    /* TODO: steps 1 to 4 above. */
    fprintf(stderr, "echo_server: not implemented yet\n");
    return 1;
}
