#include "credentials.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "early_auth.h"
#include "mk/base/status_macros.h"

namespace mk::server {

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("server: cannot read ", path, " (", flag, ")"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// OpenSSL objects freed when they go out of scope.
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}
std::unique_ptr<X509, X509Free> ReadCertificate(const std::string& pem) {
  auto bio = MemoryBio(pem);
  return std::unique_ptr<X509, X509Free>(
      bio == nullptr ? nullptr : PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

bool ParsesAsCertificate(const std::string& pem) { return ReadCertificate(pem) != nullptr; }

absl::Status CheckCertificateAndKey(const std::string& cert_pem, const std::string& key_pem,
                                    const ServerOptions& o) {
  auto cert = ReadCertificate(cert_pem);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("server: --tls_cert_file ", o.tls_cert_file,
                     " holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"));
  }
  auto bio = MemoryBio(key_pem);
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      bio == nullptr ? nullptr : PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("server: --tls_key_file ", o.tls_key_file,
                     " holds no unencrypted PEM private key (expected -----BEGIN ... PRIVATE "
                     "KEY-----)"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("server: the key in --tls_key_file ",
                                                   o.tls_key_file,
                                                   " does not belong to the certificate in "
                                                   "--tls_cert_file ",
                                                   o.tls_cert_file));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials(
    const ServerOptions& o, const TenantDirectory* tenants) {
  if (o.tls_cert_file.empty() && o.tls_key_file.empty()) {
    if (!o.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "server: --tls_client_ca_file needs --tls_cert_file and --tls_key_file");
    }
    return grpc::InsecureServerCredentials();
  }
  if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("server: TLS needs both --tls_cert_file and --tls_key_file");
  }
  auto cert = ReadFile(o.tls_cert_file, "--tls_cert_file");
  if (!cert.ok()) return cert.status();
  auto key = ReadFile(o.tls_key_file, "--tls_key_file");
  if (!key.ok()) return key.status();
  MK_RETURN_IF_ERROR(CheckCertificateAndKey(*cert, *key, o));
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!o.tls_client_ca_file.empty()) {
    auto ca = ReadFile(o.tls_client_ca_file, "--tls_client_ca_file");
    if (!ca.ok()) return ca.status();
    if (!ParsesAsCertificate(*ca)) {
      return absl::InvalidArgumentError(
          absl::StrCat("server: --tls_client_ca_file ", o.tls_client_ca_file,
                       " holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"));
    }
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::SslServerCredentials(ssl);
  if (!tenants->development_mode()) {
    credentials->SetAuthMetadataProcessor(std::make_shared<EarlyAuthProcessor>(tenants));
  }
  return credentials;
}

bool IsLoopbackListen(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  std::string host = listen.substr(0, colon == std::string::npos ? listen.size() : colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

absl::Status CheckDevelopmentModeExposure(const ServerOptions& o, bool development_mode) {
  if (!development_mode || o.allow_development_mode_off_loopback || IsLoopbackListen(o.listen)) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "server: development mode (no --tenants_file) makes every caller tenant 0 and admin; "
      "refusing to listen on ",
      o.listen,
      " (not loopback). Pass --tenants_file, or --allow_development_mode_off_loopback if "
      "you mean it"));
}

void ApplyConnectionOptions(const ServerOptions& o, grpc::ServerBuilder* builder) {
  auto ms = [](absl::Duration d) {
    return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
  };
  builder->SetMaxReceiveMessageSize(static_cast<int>(o.max_message_bytes));
  builder->SetMaxSendMessageSize(static_cast<int>(o.max_message_bytes));
  if (o.keepalive_min_ping_interval > absl::ZeroDuration()) {
    // Clients that keep connections alive with pings (also between calls) at this interval or
    // slower are welcome; faster ones get GOAWAY too_many_pings.
    builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                                ms(o.keepalive_min_ping_interval));
    builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  }
  if (o.max_connection_idle > absl::ZeroDuration()) {
    builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, ms(o.max_connection_idle));
  }
  if (o.max_connection_age > absl::ZeroDuration()) {
    builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, ms(o.max_connection_age));
    builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                                ms(o.max_connection_age_grace));
  }
  builder->AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                              static_cast<int>(o.max_concurrent_streams_per_connection));
}

}  // namespace mk::server
