/* Regression for issue 11 (3, 4): AF_INET6 sockets on the stack, as Linux with
 * bindv6only=0 has them. Prints every address the kernel API hands back in full
 * (family, port, flowinfo, scope_id, address, length) so the test can compare with
 * what Linux does.
 *
 *   dualstack listen PORT V6ONLY     [::]:PORT, IPV6_V6ONLY=V6ONLY; accept one, echo
 *   dualstack connect ADDR PORT      AF_INET6 connect to ADDR (text), send "ping"
 *   dualstack gai HOST PORT          getaddrinfo(AF_INET6, AI_V4MAPPED), connect
 *   dualstack udp PORT               [::]:PORT UDP: recvfrom one datagram, answer it
 *   dualstack bindmapped V6ONLY      bind ::ffff:0.0.0.0:0 with IPV6_V6ONLY=V6ONLY
 *   dualstack v6only-errors V4PEER   the errno values of IPV6_V6ONLY (issue 13): connect
 *                                    to ::ffff:V4PEER, bind ::ffff:0.0.0.0, V6ONLY after
 *                                    bind, on an AF_INET socket
 *   dualstack send6 ADDR PORT        AF_INET6 UDP: sendto ADDR, recvfrom the answer
 *
 * `connect`, `listen` and `udp` take native IPv6 (the stack's own, issue 13) as well.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *errname(int e)
{
    switch (e) {
    case ENETUNREACH: return "ENETUNREACH";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EINVAL: return "EINVAL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENETDOWN: return "ENETDOWN";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    default: return "E?";
    }
}

static void show(const char *what, const struct sockaddr_storage *ss, socklen_t len)
{
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    char text[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof text);
        printf("%s family %d len %u addr %s port %u flowinfo %u scope %u\n", what,
               ss->ss_family, (unsigned)len, text, ntohs(s6->sin6_port),
               (unsigned)s6->sin6_flowinfo, (unsigned)s6->sin6_scope_id);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, text, sizeof text);
        printf("%s family %d len %u addr %s port %u\n", what, ss->ss_family, (unsigned)len,
               text, ntohs(s4->sin_port));
    }
}

static void names(int s)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0xAA, sizeof ss);
    if (getsockname(s, (struct sockaddr *)&ss, &len) == 0)
        show("sockname", &ss, len);
    len = sizeof ss;
    memset(&ss, 0xAA, sizeof ss);
    if (getpeername(s, (struct sockaddr *)&ss, &len) == 0)
        show("peername", &ss, len);
}

static int domain_of(int s)
{
    int d = 0;
    socklen_t l = sizeof d;
    getsockopt(s, SOL_SOCKET, SO_DOMAIN, &d, &l);
    return d;
}

static int talk(int s)
{
    if (write(s, "ping\n", 5) != 5)
        return 1;
    char buf[100];
    ssize_t n = read(s, buf, sizeof buf - 1);
    if (n <= 0)
        return 1;
    buf[n] = 0;
    printf("reply %s", buf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: see the header of dualstack.c\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "listen") || !strcmp(cmd, "udp") || !strcmp(cmd, "bindmapped")) {
        int udp = !strcmp(cmd, "udp");
        int s = socket(AF_INET6, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
        int only = !strcmp(cmd, "udp") ? 0 : atoi(argv[!strcmp(cmd, "bindmapped") ? 2 : 3]);
        if (s < 0 || setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &only, sizeof only) < 0) {
            perror("socket/IPV6_V6ONLY");
            return 2;
        }
        int got = -1;
        socklen_t gl = sizeof got;
        getsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &got, &gl);
        printf("v6only %d domain %d\n", got, domain_of(s));
        struct sockaddr_in6 sin6;
        memset(&sin6, 0, sizeof sin6);
        sin6.sin6_family = AF_INET6;
        if (!strcmp(cmd, "bindmapped")) {
            inet_pton(AF_INET6, "::ffff:0.0.0.0", &sin6.sin6_addr);
            if (bind(s, (struct sockaddr *)&sin6, sizeof sin6) < 0)
                printf("bind %s\n", errname(errno));
            else
                printf("bind ok\n");
            return 0;
        }
        sin6.sin6_port = htons((uint16_t)atoi(argv[2]));
        if (bind(s, (struct sockaddr *)&sin6, sizeof sin6) < 0 || (!udp && listen(s, 8) < 0)) {
            perror("bind/listen");
            return 2;
        }
        names(s);
        if (udp) { /* what DNS servers set on their AF_INET6 UDP sockets */
            int on = 1;
            int rc = setsockopt(s, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
            printf("recvpktinfo %s\n", rc == 0 ? "ok" : errname(errno));
        }
        printf("listening %s\n", argv[2]);
        if (udp) {
            char buf[100];
            struct sockaddr_storage from;
            socklen_t fl = sizeof from;
            memset(&from, 0xAA, sizeof from);
            ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
            if (n < 0) {
                perror("recvfrom");
                return 2;
            }
            show("from", &from, fl);
            if (sendto(s, buf, (size_t)n, 0, (struct sockaddr *)&from, fl) != n) {
                perror("sendto");
                return 2;
            }
            return 0;
        }
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        memset(&peer, 0xAA, sizeof peer);
        int c = accept(s, (struct sockaddr *)&peer, &pl);
        if (c < 0) {
            perror("accept");
            return 2;
        }
        show("accepted", &peer, pl);
        names(c);
        printf("domain %d\n", domain_of(c));
        char buf[100];
        ssize_t n = read(c, buf, sizeof buf);
        if (n > 0 && write(c, buf, (size_t)n) != n)
            return 2;
        close(c);
        return 0;
    }
    if (!strcmp(cmd, "v6only-errors")) {
        int on = 1;
        struct sockaddr_in6 sin6;
        memset(&sin6, 0, sizeof sin6);
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(9);
        char mapped[64];
        snprintf(mapped, sizeof mapped, "::ffff:%s", argv[2]);
        if (inet_pton(AF_INET6, mapped, &sin6.sin6_addr) != 1)
            return 2;
        int s = socket(AF_INET6, SOCK_STREAM, 0);
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
        int rc = connect(s, (struct sockaddr *)&sin6, sizeof sin6);
        printf("connect-mapped %s\n", rc == 0 ? "ok" : errname(errno));
        close(s);
        s = socket(AF_INET6, SOCK_DGRAM, 0);
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
        rc = (int)sendto(s, "x", 1, 0, (struct sockaddr *)&sin6, sizeof sin6);
        printf("sendto-mapped %s\n", rc >= 0 ? "ok" : errname(errno));
        close(s);
        s = socket(AF_INET6, SOCK_STREAM, 0);
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
        inet_pton(AF_INET6, "::ffff:0.0.0.0", &sin6.sin6_addr);
        sin6.sin6_port = 0;
        rc = bind(s, (struct sockaddr *)&sin6, sizeof sin6);
        printf("bind-mapped %s\n", rc == 0 ? "ok" : errname(errno));
        close(s);
        s = socket(AF_INET6, SOCK_STREAM, 0);
        memset(&sin6.sin6_addr, 0, sizeof sin6.sin6_addr);
        rc = bind(s, (struct sockaddr *)&sin6, sizeof sin6);
        int off = 0;
        int rc2 = setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
        printf("bind-any %s v6only-after-bind %s\n", rc == 0 ? "ok" : errname(errno),
               rc2 == 0 ? "ok" : errname(errno));
        int got = -1;
        socklen_t gl = sizeof got;
        getsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &got, &gl);
        printf("v6only-reads %d\n", got);
        close(s);
        s = socket(AF_INET, SOCK_STREAM, 0);
        rc = setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
        printf("inet-v6only %s\n", rc == 0 ? "ok" : errname(errno));
        close(s);
        return 0;
    }
    if (!strcmp(cmd, "send6")) {
        struct sockaddr_in6 dst;
        memset(&dst, 0, sizeof dst);
        dst.sin6_family = AF_INET6;
        dst.sin6_port = htons((uint16_t)atoi(argv[3]));
        if (argc < 4 || inet_pton(AF_INET6, argv[2], &dst.sin6_addr) != 1)
            return 2;
        int s = socket(AF_INET6, SOCK_DGRAM, 0);
        struct timeval tv = {10, 0};
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (sendto(s, "dgram6", 6, 0, (struct sockaddr *)&dst, sizeof dst) != 6) {
            printf("error %s\n", errname(errno));
            return 3;
        }
        names(s);
        char buf[100];
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        memset(&from, 0xAA, sizeof from);
        ssize_t n = recvfrom(s, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);
        if (n < 0) {
            printf("error %s\n", errname(errno));
            return 3;
        }
        buf[n] = 0;
        show("from", &from, fl);
        printf("reply %s\n", buf);
        return 0;
    }
    if (!strcmp(cmd, "connect") || !strcmp(cmd, "gai")) {
        struct sockaddr_storage dst;
        socklen_t dl = sizeof(struct sockaddr_in6);
        memset(&dst, 0, sizeof dst);
        if (!strcmp(cmd, "gai")) {
            struct addrinfo hints, *res;
            memset(&hints, 0, sizeof hints);
            hints.ai_family = AF_INET6;
            hints.ai_socktype = SOCK_STREAM;
            hints.ai_flags = AI_V4MAPPED | AI_NUMERICSERV;
            int rc = getaddrinfo(argv[2], argv[3], &hints, &res);
            if (rc) {
                printf("getaddrinfo %s\n", gai_strerror(rc));
                return 2;
            }
            memcpy(&dst, res->ai_addr, res->ai_addrlen);
            dl = res->ai_addrlen;
            freeaddrinfo(res);
            show("resolved", &dst, dl);
        } else {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&dst;
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons((uint16_t)atoi(argv[3]));
            if (inet_pton(AF_INET6, argv[2], &s6->sin6_addr) != 1)
                return 2;
        }
        int s = socket(AF_INET6, SOCK_STREAM, 0);
        if (s < 0) {
            perror("socket");
            return 2;
        }
        if (connect(s, (struct sockaddr *)&dst, dl) < 0) {
            printf("error %s\n", errname(errno));
            return 3;
        }
        printf("connected domain %d\n", domain_of(s));
        names(s);
        return talk(s);
    }
    return 2;
}
