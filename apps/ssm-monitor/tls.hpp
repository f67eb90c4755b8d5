#pragma once
// TLS for ssm-monitor (OpenSSL through Boost.Asio's ssl layer): the server's context (its certificate and key, the
// protocol floor) and the client's (what it trusts, which name it checks). The sessions themselves live in
// server.cpp and client.cpp; this file only decides how TLS is configured and how its failures read.
#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>
#include <string>

namespace ssm::monitor {

/** The server's TLS context: TLS 1.2 or later (no SSLv2/3, TLS 1.0/1.1), no compression, no renegotiation,
 * forward-secret AEAD suites for TLS 1.2 (OpenSSL's defaults for 1.3), the certificate chain and private key from
 * PEM files. Throws ssm::UsageError naming the option, the file and the fault: not readable, not PEM, an encrypted
 * key (never prompts for a passphrase), or a key that does not belong to the certificate. */
boost::asio::ssl::context make_server_tls(const std::string& cert_file, const std::string& key_file);

/** The client's TLS context: TLS 1.2 or later. Verifies the server's certificate chain against `ca_file` alone
 * when given, else against the system's trusted certificates; `insecure` turns verification off (encryption
 * without authentication: the caller warns). Throws ssm::UsageError for an unreadable or empty `ca_file`. */
boost::asio::ssl::context make_client_tls(const std::string& ca_file, bool insecure);

/** Before a client handshake on `ssl`: sends `host` as SNI (unless it is an IP literal, which SNI may not carry)
 * and, when `verify`, makes the handshake fail unless the certificate names `host` (DNS name or IP address). */
void set_tls_peer(SSL* ssl, const std::string& host, bool verify);

/** A failed client handshake in words (to follow "TLS: "): when the server's certificate was rejected, why
 * (OpenSSL's verification result, e.g. "self-signed certificate", "hostname mismatch"), else the error itself. */
std::string tls_client_error(const boost::system::error_code& ec, SSL* ssl, bool verified);

/** A failed server handshake in words, with a hint for the common case of a plaintext client on a TLS port. */
std::string tls_server_error(const boost::system::error_code& ec);

/** Boost.Asio asks OpenSSL to free a connection's record buffers whenever they run empty (SSL_MODE_RELEASE_BUFFERS):
 * a malloc and a free for every record a stream sends or receives. A streaming connection keeps them instead (about
 * 34 KiB per connection, for as long as it lives); call this once per connection, before its handshake. */
void keep_record_buffers(SSL* ssl);

/** True for an error raised by the TLS layer itself (a protocol or certificate failure, which a retry will not
 * fix), false for a transport error (reset, EOF) or a timeout. */
bool is_tls_error(const boost::system::error_code& ec);

}  // namespace ssm::monitor
