#include "tls.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ssmstream/error.hpp"

namespace ssm::monitor {
namespace {

namespace ssl = boost::asio::ssl;

/** The whole of a small PEM file, or a UsageError naming the option and the file. */
std::string read_pem(const std::string& path, const char* option) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw ssm::UsageError(std::string(option) + " " + path + ": cannot open: " + std::strerror(errno));
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (text.size() > (1u << 20)) throw ssm::UsageError(std::string(option) + " " + path + ": larger than 1 MiB; not a PEM file");
    if (text.find("-----BEGIN ") == std::string::npos)
        throw ssm::UsageError(std::string(option) + " " + path + ": not a PEM file (no -----BEGIN line)");
    return text;
}

/** The oldest error OpenSSL has queued, in words; clears the queue (so that it cannot leak into a later report). */
std::string openssl_reason() {
    const unsigned long e = ERR_peek_error();
    const char* s = e ? ERR_reason_error_string(e) : nullptr;
    std::string r = s ? s : e ? "OpenSSL error " + std::to_string(e) : "no detail from OpenSSL";
    ERR_clear_error();
    return r;
}

std::string reason_of(const boost::system::error_code& ec) {
    ERR_clear_error();
    return ec.message();
}

// Shared by both sides: nothing older than TLS 1.2, no compression (CRIME).
void common_options(ssl::context& ctx) {
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                    ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::no_compression);
    if (SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION) != 1)
        throw ssm::Error("TLS: cannot set the minimum protocol version: " + openssl_reason());
    // Never prompt on the terminal for a passphrase (OpenSSL's default for an encrypted PEM key): a server started
    // by a service manager would hang there. An encrypted key is refused with a message instead.
    ctx.set_password_callback([](std::size_t, ssl::context::password_purpose) { return std::string(); });
}

bool is_ip_literal(const std::string& host) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(host, ec);
    return !ec;
}

unsigned long ssl_reason(const boost::system::error_code& ec) {
    return static_cast<unsigned long>(ERR_GET_REASON(static_cast<unsigned long>(ec.value())));
}

}  // namespace

ssl::context make_server_tls(const std::string& cert_file, const std::string& key_file) {
    read_pem(cert_file, "--cert");
    const std::string key_pem = read_pem(key_file, "--key");

    ssl::context ctx(ssl::context::tls_server);
    common_options(ctx);
    SSL_CTX* c = ctx.native_handle();
    // Renegotiation buys a client nothing here and lets it make the server redo the expensive half of a handshake.
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    // TLS 1.2 suites: ephemeral key exchange (forward secrecy) and AEAD only. TLS 1.3's suites are all of that kind
    // and keep OpenSSL's defaults.
    if (SSL_CTX_set_cipher_list(c, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL") != 1)
        throw ssm::Error("TLS: cannot set the cipher list: " + openssl_reason());

    boost::system::error_code ec;
    ctx.use_certificate_chain_file(cert_file, ec);
    if (ec) throw ssm::UsageError("--cert " + cert_file + ": no usable PEM certificate in it (" + reason_of(ec) + ")");

    // The key is parsed here rather than by SSL_CTX_use_PrivateKey_file so that "not a key" and "not this
    // certificate's key" get different messages.
    const bool encrypted = key_pem.find("ENCRYPTED") != std::string::npos;
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())), &BIO_free);
    if (!bio) throw ssm::Error("TLS: out of memory reading " + key_file);
    auto no_passphrase = [](char*, int, int, void*) { return 0; };
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr),
                                                              &EVP_PKEY_free);
    if (!pkey) {
        const std::string why = openssl_reason();
        throw ssm::UsageError("--key " + key_file + ": " +
                              (encrypted ? "the key is encrypted; give an unencrypted PEM key (e.g. openssl pkey -in KEY -out PLAIN)"
                                         : "no usable PEM private key in it (" + why + ")"));
    }
    if (SSL_CTX_use_PrivateKey(c, pkey.get()) != 1 || SSL_CTX_check_private_key(c) != 1) {
        const std::string why = openssl_reason();
        throw ssm::UsageError("--key " + key_file + " does not belong to the certificate in --cert " + cert_file + " (" + why + ")");
    }
    return ctx;
}

ssl::context make_client_tls(const std::string& ca_file, bool insecure) {
    ssl::context ctx(ssl::context::tls_client);
    common_options(ctx);
    if (insecure) {
        ctx.set_verify_mode(ssl::verify_none);
        return ctx;
    }
    ctx.set_verify_mode(ssl::verify_peer);
    boost::system::error_code ec;
    if (ca_file.empty()) {
        ctx.set_default_verify_paths(ec);
        if (ec) throw ssm::UsageError("--tls: cannot read the system's trusted certificates (" + reason_of(ec) + "); give --ca FILE");
    } else {
        read_pem(ca_file, "--ca");
        ctx.load_verify_file(ca_file, ec);
        if (ec) throw ssm::UsageError("--ca " + ca_file + ": no usable PEM certificate in it (" + reason_of(ec) + ")");
    }
    return ctx;
}

void set_tls_peer(SSL* s, const std::string& host, bool verify) {
    const bool ip = is_ip_literal(host);
    if (!ip && SSL_set_tlsext_host_name(s, host.c_str()) != 1)
        throw ssm::UsageError("--host " + host + ": cannot be sent as a TLS server name (" + openssl_reason() + ")");
    if (!verify) return;
    X509_VERIFY_PARAM* p = SSL_get0_param(s);
    X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(p, host.c_str()) : X509_VERIFY_PARAM_set1_host(p, host.c_str(), 0);
    if (ok != 1) throw ssm::UsageError("--host " + host + ": cannot be checked against a certificate (" + openssl_reason() + ")");
}

std::string tls_client_error(const boost::system::error_code& ec, SSL* s, bool verified) {
    if (verified && s) {
        const long v = SSL_get_verify_result(s);
        if (v != X509_V_OK)
            return std::string("the server's certificate was rejected: ") + X509_verify_cert_error_string(v);
    }
    std::string r = "handshake failed: " + reason_of(ec);
    if (ec.category() == boost::asio::error::get_ssl_category() && ssl_reason(ec) == SSL_R_WRONG_VERSION_NUMBER)
        r += " (the server does not speak TLS: is it running with --cert/--key?)";
    return r;
}

std::string tls_server_error(const boost::system::error_code& ec) {
    if (ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset || ec == ssl::error::stream_truncated ||
        (ec.category() == boost::asio::error::get_ssl_category() && ssl_reason(ec) == SSL_R_UNEXPECTED_EOF_WHILE_READING))
        return "the client closed the connection during the handshake";
    std::string r = reason_of(ec);
    if (ec.category() == boost::asio::error::get_ssl_category()) {
        const auto why = ssl_reason(ec);
        if (why == SSL_R_HTTP_REQUEST)
            r += ": plain HTTP on a TLS-only port (use https:// and wss://)";
        else if (why == SSL_R_WRONG_VERSION_NUMBER || why == SSL_R_UNKNOWN_PROTOCOL || why == SSL_R_PACKET_LENGTH_TOO_LONG ||
                 why == SSL_R_RECORD_LENGTH_MISMATCH)
            r += ": not TLS (a plaintext client on a TLS-only port?)";
    }
    return r;
}

void keep_record_buffers(SSL* s) { SSL_clear_mode(s, SSL_MODE_RELEASE_BUFFERS); }

bool is_tls_error(const boost::system::error_code& ec) {
    return ec.category() == boost::asio::error::get_ssl_category() && ssl_reason(ec) != SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

}  // namespace ssm::monitor
