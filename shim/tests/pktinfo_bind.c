/* Regression for issue 11 (the two the program matrix left): IP_PKTINFO control
 * messages, field by field, and the privileged-port rule for processes that made
 * their first socket after dropping privileges. Run under the shim (and under
 * AddressSanitizer by tests/unit/test_ipc_server.py); exits 0 when every check holds,
 * printing one line per failed check.
 *
 *   pktinfo_bind pktinfo ADDR PORT IFINDEX   UDP on 0.0.0.0:PORT, datagrams to ADDR:PORT
 *   pktinfo_bind bind                        (as root) privileged ports, root and nobody
 *   pktinfo_bind bindport PORT               bind TCP PORT as we are; prints ok or the errno
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            failures++;                                                                    \
            printf("FAIL line %d: ", __LINE__);                                            \
            printf(__VA_ARGS__);                                                           \
            printf(" (errno %d %s)\n", errno, strerror(errno));                            \
        }                                                                                  \
    } while (0)

static void send_ping(const char *addr, int port)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, addr, &to.sin_addr);
    CHECK(sendto(s, "ping", 4, 0, (struct sockaddr *)&to, sizeof to) == 4, "sendto");
    close(s);
}

/* One datagram with a control buffer of `room` bytes; returns its length. */
static ssize_t receive(int s, void *control, size_t room, struct msghdr *m,
                       struct sockaddr_storage *from)
{
    static char data[64];
    static struct iovec iov;
    iov.iov_base = data;
    iov.iov_len = sizeof data;
    memset(m, 0, sizeof *m);
    m->msg_name = from;
    m->msg_namelen = sizeof *from;
    m->msg_iov = &iov;
    m->msg_iovlen = 1;
    m->msg_control = control;
    m->msg_controllen = room;
    return recvmsg(s, m, 0);
}

static int pktinfo(const char *addr, int port, int ifindex)
{
    struct in_addr stack;
    inet_pton(AF_INET, addr, &stack);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int on = 1;
    CHECK(setsockopt(s, IPPROTO_IP, IP_PKTINFO, &on, sizeof on) == 0, "IP_PKTINFO on");
    int got = 0;
    socklen_t gl = sizeof got;
    CHECK(getsockopt(s, IPPROTO_IP, IP_PKTINFO, &got, &gl) == 0 && got == 1,
          "IP_PKTINFO reads back %d", got);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    CHECK(bind(s, (struct sockaddr *)&any, sizeof any) == 0, "bind");

    /* 1. the whole control message, exactly as ip(7) describes it */
    union {
        char buf[CMSG_SPACE(sizeof(struct in_pktinfo)) + 64];
        struct cmsghdr align;
    } cm;
    memset(&cm, 0xAA, sizeof cm);
    struct msghdr m;
    struct sockaddr_storage from;
    send_ping(addr, port);
    CHECK(receive(s, cm.buf, sizeof cm.buf, &m, &from) == 4, "recvmsg");
    CHECK(m.msg_controllen == CMSG_SPACE(sizeof(struct in_pktinfo)),
          "msg_controllen %zu, want %zu", (size_t)m.msg_controllen,
          (size_t)CMSG_SPACE(sizeof(struct in_pktinfo)));
    CHECK(!(m.msg_flags & MSG_CTRUNC), "MSG_CTRUNC with room to spare");
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    CHECK(c && c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
              c->cmsg_len == CMSG_LEN(sizeof(struct in_pktinfo)),
          "the cmsg header");
    if (c) {
        struct in_pktinfo p;
        memcpy(&p, CMSG_DATA(c), sizeof p);
        CHECK(p.ipi_ifindex == ifindex, "ipi_ifindex %d, want %d", p.ipi_ifindex, ifindex);
        CHECK(p.ipi_spec_dst.s_addr == stack.s_addr, "ipi_spec_dst %s",
              inet_ntoa(p.ipi_spec_dst));
        CHECK(p.ipi_addr.s_addr == stack.s_addr, "ipi_addr %s", inet_ntoa(p.ipi_addr));
        CHECK(CMSG_NXTHDR(&m, c) == NULL, "a second cmsg");
    }
    /* 2. no room: Linux cuts it and says MSG_CTRUNC */
    send_ping(addr, port);
    CHECK(receive(s, cm.buf, sizeof(struct cmsghdr) + 4, &m, &from) == 4, "recvmsg short");
    CHECK(m.msg_flags & MSG_CTRUNC, "no MSG_CTRUNC with a short control buffer");
    CHECK(m.msg_controllen == sizeof(struct cmsghdr) + 4, "short msg_controllen %zu",
          (size_t)m.msg_controllen);
    /* 3. recvfrom and read still work, and take the datagram alone */
    send_ping(addr, port);
    char buf[16];
    CHECK(read(s, buf, sizeof buf) == 4 && !memcmp(buf, "ping", 4), "read");
    /* 3b. recvmmsg: each message its control message and source, no descriptor left */
    int lowest = dup(0);
    close(lowest);
    send_ping(addr, port);
    send_ping(addr, port);
    struct mmsghdr vec[2];
    struct iovec viov[2];
    char vdata[2][16];
    union {
        char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } vcm[2];
    struct sockaddr_in vfrom[2];
    memset(vec, 0, sizeof vec);
    for (int i = 0; i < 2; i++) {
        viov[i].iov_base = vdata[i];
        viov[i].iov_len = sizeof vdata[i];
        vec[i].msg_hdr.msg_iov = &viov[i];
        vec[i].msg_hdr.msg_iovlen = 1;
        vec[i].msg_hdr.msg_name = &vfrom[i];
        vec[i].msg_hdr.msg_namelen = sizeof vfrom[i];
        vec[i].msg_hdr.msg_control = vcm[i].buf;
        vec[i].msg_hdr.msg_controllen = sizeof vcm[i].buf;
    }
    CHECK(recvmmsg(s, vec, 2, 0, NULL) == 2, "recvmmsg");
    for (int i = 0; i < 2; i++) {
        struct cmsghdr *vc = CMSG_FIRSTHDR(&vec[i].msg_hdr);
        CHECK(vec[i].msg_len == 4 && vfrom[i].sin_family == AF_INET &&
                  vfrom[i].sin_addr.s_addr == stack.s_addr && vc &&
                  vc->cmsg_type == IP_PKTINFO &&
                  vec[i].msg_hdr.msg_controllen == CMSG_SPACE(sizeof(struct in_pktinfo)),
              "recvmmsg message %d", i);
    }
    int after = dup(0);
    close(after);
    CHECK(after == lowest, "a descriptor left behind: %d", lowest);
    /* 4. switched off: no control message */
    int off = 0;
    CHECK(setsockopt(s, IPPROTO_IP, IP_PKTINFO, &off, sizeof off) == 0, "IP_PKTINFO off");
    send_ping(addr, port);
    CHECK(receive(s, cm.buf, sizeof cm.buf, &m, &from) == 4, "recvmsg off");
    CHECK(m.msg_controllen == 0, "controllen %zu with IP_PKTINFO off", (size_t)m.msg_controllen);

    /* 5. sendmsg with IP_PKTINFO choosing the source: ours is fine, another is EINVAL,
     * an interface that does not exist ENODEV (ip(7), as Linux's route lookup) */
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    to.sin_addr = stack;
    struct iovec iov = {"pong", 4};
    struct in_pktinfo sp;
    const struct {
        const char *src;
        int ifindex;
        int want; /* 0: sent, else the errno */
    } sends[] = {{addr, 0, 0}, {"0.0.0.0", ifindex, 0}, {"10.9.9.9", 0, EINVAL},
                 {"0.0.0.0", 99999, ENODEV}};
    for (size_t i = 0; i < sizeof sends / sizeof sends[0]; i++) {
        union {
            char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
            struct cmsghdr align;
        } out;
        memset(&out, 0, sizeof out);
        memset(&sp, 0, sizeof sp);
        inet_pton(AF_INET, sends[i].src, &sp.ipi_spec_dst);
        sp.ipi_ifindex = sends[i].ifindex;
        struct msghdr sm = {.msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &iov,
                            .msg_iovlen = 1, .msg_control = out.buf,
                            .msg_controllen = sizeof out.buf};
        struct cmsghdr *oc = CMSG_FIRSTHDR(&sm);
        oc->cmsg_level = IPPROTO_IP;
        oc->cmsg_type = IP_PKTINFO;
        oc->cmsg_len = CMSG_LEN(sizeof sp);
        memcpy(CMSG_DATA(oc), &sp, sizeof sp);
        errno = 0;
        ssize_t n = sendmsg(s, &sm, 0);
        if (sends[i].want == 0) {
            CHECK(n == 4, "sendmsg from %s ifindex %d", sends[i].src, sends[i].ifindex);
            CHECK(read(s, buf, sizeof buf) == 4 && !memcmp(buf, "pong", 4), "pong back");
        } else {
            CHECK(n == -1 && errno == sends[i].want, "sendmsg from %s ifindex %d: want %s",
                  sends[i].src, sends[i].ifindex, strerror(sends[i].want));
        }
    }
    close(s);

    /* 6. AF_INET6 with IPV6_RECVPKTINFO: IPV6_PKTINFO, the destination v4-mapped */
    int s6 = socket(AF_INET6, SOCK_DGRAM, 0);
    CHECK(setsockopt(s6, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on) == 0,
          "IPV6_RECVPKTINFO");
    struct sockaddr_in6 any6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)(port + 1))};
    CHECK(bind(s6, (struct sockaddr *)&any6, sizeof any6) == 0, "bind6");
    send_ping(addr, port + 1);
    CHECK(receive(s6, cm.buf, sizeof cm.buf, &m, &from) == 4, "recvmsg6");
    c = CMSG_FIRSTHDR(&m);
    CHECK(m.msg_controllen == CMSG_SPACE(sizeof(struct in6_pktinfo)) && c &&
              c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
              c->cmsg_len == CMSG_LEN(sizeof(struct in6_pktinfo)),
          "the IPV6_PKTINFO cmsg header");
    if (c) {
        struct in6_pktinfo p6;
        memcpy(&p6, CMSG_DATA(c), sizeof p6);
        struct in6_addr want6;
        char text[64];
        snprintf(text, sizeof text, "::ffff:%s", addr);
        inet_pton(AF_INET6, text, &want6);
        CHECK(!memcmp(&p6.ipi6_addr, &want6, sizeof want6) &&
                  (int)p6.ipi6_ifindex == ifindex,
              "in6_pktinfo");
    }
    close(s6);
    return failures;
}

static int try_bind(int type, int port)
{
    int s = socket(AF_INET, type, 0);
    if (s < 0)
        return errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int rc = bind(s, (struct sockaddr *)&a, sizeof a) == 0 ? 0 : errno;
    close(s);
    return rc;
}

static int privileged(void)
{
    /* root may */
    CHECK(try_bind(SOCK_STREAM, 80) == 0, "root binds TCP 80");
    CHECK(try_bind(SOCK_DGRAM, 53) == 0, "root binds UDP 53");
    /* a process that drops privileges and then makes its first socket may make
     * sockets, bind unprivileged ports, and not privileged ones (EACCES, as Linux) */
    pid_t pid = fork();
    if (pid == 0) {
        if (setgroups(0, NULL) || setgid(65534) || setuid(65534)) {
            printf("FAIL cannot become nobody: %s\n", strerror(errno));
            _exit(2);
        }
        failures = 0;
        int rc = try_bind(SOCK_STREAM, 81);
        CHECK(rc == EACCES, "nobody binds TCP 81: %s", strerror(rc));
        rc = try_bind(SOCK_DGRAM, 82);
        CHECK(rc == EACCES, "nobody binds UDP 82: %s", strerror(rc));
        rc = try_bind(SOCK_STREAM, 8081);
        CHECK(rc == 0, "nobody binds TCP 8081: %s", strerror(rc));
        rc = try_bind(SOCK_STREAM, 0);
        CHECK(rc == 0, "nobody binds TCP port 0: %s", strerror(rc));
        fflush(stdout);
        _exit(failures ? 1 : 0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the nobody child");
    return failures;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int rc;
    if (argc == 5 && !strcmp(argv[1], "pktinfo"))
        rc = pktinfo(argv[2], atoi(argv[3]), atoi(argv[4]));
    else if (argc == 2 && !strcmp(argv[1], "bind"))
        rc = privileged();
    else if (argc == 3 && !strcmp(argv[1], "bindport")) {
        int e = try_bind(SOCK_STREAM, atoi(argv[2]));
        printf("uid %d bind %s: %s\n", (int)geteuid(), argv[2],
               e == 0 ? "ok" : e == EACCES ? "EACCES" : strerror(e));
        return e == 0 ? 0 : 1;
    }
    else {
        fprintf(stderr, "usage: pktinfo_bind pktinfo ADDR PORT IFINDEX | bind\n");
        return 2;
    }
    printf("%s\n", rc ? "failed" : "ok");
    return rc ? 1 : 0;
}
