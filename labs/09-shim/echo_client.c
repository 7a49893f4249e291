/* Lab 09: echo_client HOST PORT -- send stdin to a TCP server, print what comes back.
 *
 *   gcc -Wall -O1 -o echo_client echo_client.c
 *   echo hello | ./echo_client 127.0.0.1 7007                  # on the kernel's TCP
 *   echo hello | tcplab run -- ./echo_client peer 7            # on the tcplab stack
 *   python3 -m stack.labkit test 09 --impl .                   # the step-by-step tests
 *
 * What it must do (the tests check each point):
 *   1. resolve HOST with getaddrinfo (AF_INET, SOCK_STREAM): "10.0.1.20" and "peer" both
 *      work; connect(); on failure perror("connect") and exit 1 (a refused connection
 *      is an RST from the other side: read about it in lab 05);
 *   2. copy stdin to the socket and the socket to stdout, until the server closes;
 *   3. when stdin ends, shutdown(s, SHUT_WR): a half-close. Our FIN tells the server
 *      "no more data", and the echo of what we sent can still come back;
 *   4. when read() on the socket returns 0 (the server's FIN), exit 0.
 *
 * The trap: an echo server sends back while you are still sending. If you only write
 * until stdin is done and read afterwards, with 1 MB the server's send buffer and your
 * receive buffer fill up, the server stops reading, your write() blocks: both wait
 * forever. Read and write at the same time: poll() on stdin and the socket (POLLIN on
 * both, POLLOUT on the socket while you have unsent bytes) with the socket in
 * O_NONBLOCK mode (fcntl) so a write() never blocks.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* TODO: steps 1 to 4 above. */
    fprintf(stderr, "echo_client: not implemented yet\n");
    return 1;
}
