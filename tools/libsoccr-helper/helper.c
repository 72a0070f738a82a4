/*
 * libsoccr-helper: drives CRIU's C libsoccr (built from CRIU's source by
 * scripts/build-libsoccr, never committed) on a socket handed over by tcplab, so that the
 * lab can run its cases with libsoccr in place of the Go port (differential testing).
 *
 *   libsoccr-helper save FD            -> stdout: 17 x u32 (struct libsoccr_sk_data, native
 *                                          endian), then the recv queue, then the send queue
 *   libsoccr-helper restore FD NSFD SRC DST < same format on stdin
 *
 * FD is an inherited TCP socket (save: already in repair mode; restore: fresh, unbound, its
 * buffers already set as CRIU does). NSFD is the netns the fake FIN must be sent in (libnet
 * raw socket). SRC/DST are "ip port". Exit status 0 on success; libsoccr's log goes to stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <net/if.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "soccr.h"

static void logfn(unsigned int level, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, level == SOCCR_LOG_ERR ? "libsoccr error: " : "libsoccr: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *b = p;
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, void *p, size_t n)
{
	char *b = p;
	while (n > 0) {
		ssize_t r = read(fd, b, n);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			return -1;
		}
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

static int parse_addr(const char *ipz, const char *port, union libsoccr_addr *a)
{
	char ip[INET6_ADDRSTRLEN + 32], *zone;

	memset(a, 0, sizeof(*a));
	snprintf(ip, sizeof(ip), "%s", ipz);
	zone = strchr(ip, '%');
	if (zone) {
		*zone++ = 0;
		a->v6.sin6_scope_id = isdigit((unsigned char)*zone) ? (uint32_t)atoi(zone) : if_nametoindex(zone);
	}
	if (inet_pton(AF_INET, ip, &a->v4.sin_addr) == 1) {
		a->v4.sin_family = AF_INET;
		a->v4.sin_port = htons((unsigned short)atoi(port));
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &a->v6.sin6_addr) == 1) {
		uint32_t scope = a->v6.sin6_scope_id;
		a->v6.sin6_scope_id = scope;
		a->v6.sin6_family = AF_INET6;
		a->v6.sin6_port = htons((unsigned short)atoi(port));
		return 0;
	}
	return -1;
}

static int do_save(int fd)
{
	struct libsoccr_sk_data data;
	struct libsoccr_sk *sk = libsoccr_pause(fd);
	char *q;

	if (!sk)
		return 2;
	memset(&data, 0, sizeof(data));
	if (libsoccr_save(sk, &data, sizeof(data)) < 0)
		return 3;
	if (write_all(1, &data, sizeof(data)))
		return 4;
	q = libsoccr_get_queue_bytes(sk, TCP_RECV_QUEUE, 0);
	if (data.inq_len && (!q || write_all(1, q, data.inq_len)))
		return 4;
	q = libsoccr_get_queue_bytes(sk, TCP_SEND_QUEUE, 0);
	if (data.outq_len && (!q || write_all(1, q, data.outq_len)))
		return 4;
	libsoccr_release(sk); /* the socket stays in repair mode: tcplab closes it */
	return 0;
}

static int do_restore(int fd, int nsfd, char **addr)
{
	struct libsoccr_sk_data data;
	union libsoccr_addr *src = malloc(sizeof(*src)), *dst = malloc(sizeof(*dst));
	struct libsoccr_sk *sk;
	char *inq = NULL, *outq = NULL;

	if (setns(nsfd, CLONE_NEWNET)) {
		perror("setns");
		return 2;
	}
	if (!src || !dst || parse_addr(addr[0], addr[1], src) || parse_addr(addr[2], addr[3], dst)) {
		fprintf(stderr, "bad address\n");
		return 2;
	}
	if (read_all(0, &data, sizeof(data)))
		return 2;
	if (data.inq_len && (!(inq = malloc(data.inq_len)) || read_all(0, inq, data.inq_len)))
		return 2;
	if (data.outq_len && (!(outq = malloc(data.outq_len)) || read_all(0, outq, data.outq_len)))
		return 2;
	sk = libsoccr_pause(fd);
	if (!sk)
		return 3;
	libsoccr_set_addr(sk, 1, src, SOCCR_MEM_EXCL);
	libsoccr_set_addr(sk, 0, dst, SOCCR_MEM_EXCL);
	if (inq)
		libsoccr_set_queue_bytes(sk, TCP_RECV_QUEUE, inq, SOCCR_MEM_EXCL);
	if (outq)
		libsoccr_set_queue_bytes(sk, TCP_SEND_QUEUE, outq, SOCCR_MEM_EXCL);
	if (libsoccr_restore(sk, &data, sizeof(data)))
		return 4;
	libsoccr_release(sk); /* left in repair mode: tcplab resumes it */
	return 0;
}

int main(int argc, char **argv)
{
	libsoccr_set_log(SOCCR_LOG_DBG, logfn);
	if (argc == 3 && !strcmp(argv[1], "save"))
		return do_save(atoi(argv[2]));
	if (argc == 8 && !strcmp(argv[1], "restore"))
		return do_restore(atoi(argv[2]), atoi(argv[3]), argv + 4);
	fprintf(stderr, "usage: %s save FD | restore FD NSFD SRCIP SRCPORT DSTIP DSTPORT\n", argv[0]);
	return 1;
}
