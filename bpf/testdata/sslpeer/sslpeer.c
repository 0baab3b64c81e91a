// SPDX-License-Identifier: MIT
/*
 * A minimal TLS peer over libssl's SSL_read/SSL_write, for the TLS tests:
 * built by the test with the system compiler against the library under
 * test (BoringSSL here; OpenSSL builds it too), so the plaintext Weir
 * reports is what this program wrote and read through that library.
 *
 *   sslpeer serve CERT KEY N   listen on 127.0.0.1, print the port, then
 *                              serve N connections: read one request,
 *                              answer it, close
 *   sslpeer get PORT           connect to 127.0.0.1:PORT, write one
 *                              request, read the answer to EOF, exit
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char request[] = "GET /hello HTTP/1.1\r\nHost: weir-test\r\n\r\n";
static const char response[] = "HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\n"
			       "hello over tls\n";

static int fail(const char *what)
{
	fprintf(stderr, "sslpeer: %s\n", what);
	ERR_print_errors_fp(stderr);
	return 1;
}

static int serve(const char *cert, const char *key, int n)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	char buf[4096];

	if (!ctx || SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		return fail("server context");
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 64) ||
	    getsockname(ls, (struct sockaddr *)&a, &alen))
		return fail("listen");
	printf("%d\n", ntohs(a.sin_port));
	fflush(stdout);
	for (int i = 0; i < n; i++) {
		int fd = accept(ls, NULL, NULL);
		SSL *ssl;
		int got = 0, r;

		if (fd < 0)
			return fail("accept");
		ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) != 1) {
			ERR_print_errors_fp(stderr);
			goto next;
		}
		/* One request: read until its blank line. */
		while (got < (int)sizeof(buf) - 1 && (r = SSL_read(ssl, buf + got, sizeof(buf) - 1 - got)) > 0) {
			got += r;
			buf[got] = 0;
			if (strstr(buf, "\r\n\r\n"))
				break;
		}
		if (SSL_write(ssl, response, sizeof(response) - 1) != (int)sizeof(response) - 1)
			ERR_print_errors_fp(stderr);
		SSL_shutdown(ssl);
	next:
		SSL_free(ssl);
		close(fd);
	}
	SSL_CTX_free(ctx);
	return 0;
}

static int get(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char buf[4096];
	SSL *ssl;
	int r, total = 0;

	if (!ctx || fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		return fail("connect");
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1)
		return fail("handshake");
	if (SSL_write(ssl, request, sizeof(request) - 1) != (int)sizeof(request) - 1)
		return fail("write");
	while ((r = SSL_read(ssl, buf, sizeof(buf))) > 0)
		total += r;
	if (total != (int)sizeof(response) - 1)
		return fail("short response");
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "serve"))
		return serve(argv[2], argv[3], atoi(argv[4]));
	if (argc == 3 && !strcmp(argv[1], "get"))
		return get(atoi(argv[2]));
	fprintf(stderr, "usage: sslpeer serve CERT KEY N | sslpeer get PORT\n");
	return 2;
}
