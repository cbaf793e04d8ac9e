//! The dedicated connection, with TLS through rustls.
//!
//! `sslmode` follows libpq (<https://www.postgresql.org/docs/15/libpq-ssl.html#LIBPQ-SSL-PROTECTION>):
//!
//! | sslmode       | TLS                   | certificate checked              |
//! |---------------|-----------------------|----------------------------------|
//! | `disable`     | never                 | -                                |
//! | `prefer`      | if the server has it  | no                               |
//! | `require`     | always                | no; as `verify-ca` when `sslrootcert` is given (as libpq does) |
//! | `verify-ca`   | always                | chain to the root, not the name  |
//! | `verify-full` | always                | chain and host name              |
//!
//! The default is `prefer`, like libpq. `allow` is accepted as `prefer`. Roots come from
//! `sslrootcert=<PEM file>`; without it (or with `sslrootcert=system`), the verify modes
//! trust the Mozilla roots of `webpki-roots`.
//!
//! tokio-postgres itself only knows disable/prefer/require and rejects unknown parameters, so
//! `sslmode` and `sslrootcert` are taken out of the string here and the rest is handed to it.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::Client;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::config::MigratorConfig;
use super::error::ConnectError;

/// libpq's `sslmode` values; see the module docs for what each checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, without checking its certificate (the default, and
    /// `allow`).
    Prefer,
    /// Always TLS; the certificate is checked against `sslrootcert` only when one is given.
    Require,
    /// Always TLS, with a certificate chain to a trusted root, whatever its host name.
    VerifyCa,
    /// Always TLS, with a certificate chain to a trusted root, issued for the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A connection string split into what tokio-postgres understands and the TLS settings.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Everything but the TLS settings, for tokio-postgres; set more on it (e.g.
    /// `application_name`) before [`connect_with`].
    pub config: tokio_postgres::Config,
    /// `sslmode`; [`SslMode::Prefer`] when the string has none.
    pub ssl_mode: SslMode,
    /// `sslrootcert`: a PEM file of trusted roots; `None` (or `system`) for the Mozilla
    /// roots of `webpki-roots`.
    pub ssl_root_cert: Option<PathBuf>,
}

// Hand-written so the password can never reach a log through `{:?}`.
impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("hosts", &self.config.get_hosts().len())
            .field("user", &self.config.get_user())
            .field("dbname", &self.config.get_dbname())
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    /// Parses a `postgres://` URL or a `key=value` string.
    pub fn parse(connection_string: &str) -> Result<ConnectOptions, ConnectError> {
        let mut ssl_mode = SslMode::Prefer;
        let mut ssl_root_cert = None;
        let mut take = |key: &str, value: &str| -> Result<bool, ConnectError> {
            match key {
                "sslmode" => {
                    ssl_mode = SslMode::parse(value).ok_or_else(|| ConnectError::InvalidUrl {
                        reason: "sslmode must be disable, allow, prefer, require, verify-ca or \
                                 verify-full"
                            .into(),
                    })?;
                    Ok(true)
                }
                "sslrootcert" => {
                    ssl_root_cert = (value != "system").then(|| PathBuf::from(value));
                    Ok(true)
                }
                _ => Ok(false),
            }
        };

        let rest = if let Some((base, query)) = connection_string
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
            .and_then(|_| connection_string.split_once('?'))
        {
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let decoded = percent_decode(value).ok_or_else(|| ConnectError::InvalidUrl {
                    reason: format!("bad percent-encoding in the value of `{key}`"),
                })?;
                if !take(key, &decoded)? {
                    kept.push(pair);
                }
            }
            if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        } else if connection_string.contains("://") {
            connection_string.to_owned()
        } else {
            let mut kept = Vec::new();
            for pair in connection_string.split_whitespace() {
                let handled = match pair.split_once('=') {
                    Some((key, value)) => take(key, value.trim_matches('\''))?,
                    None => false,
                };
                if !handled {
                    kept.push(pair);
                }
            }
            kept.join(" ")
        };

        // tokio-postgres's parse errors name the option, never its value; the detail is in
        // the error's source ("invalid value for option `port`").
        let mut config: tokio_postgres::Config =
            rest.parse()
                .map_err(|error: tokio_postgres::Error| ConnectError::InvalidUrl {
                    reason: std::error::Error::source(&error).map_or_else(
                        || "not a postgres:// URL or key=value string".to_owned(),
                        ToString::to_string,
                    ),
                })?;
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        });
        Ok(ConnectOptions {
            config,
            ssl_mode,
            ssl_root_cert,
        })
    }

    fn tls_config(&self) -> Result<ClientConfig, ConnectError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(self.root_store()?);
        let verify = match self.ssl_mode {
            SslMode::VerifyFull => Verify::Full,
            SslMode::VerifyCa => Verify::ChainOnly,
            SslMode::Require if self.ssl_root_cert.is_some() => Verify::ChainOnly,
            _ => Verify::Nothing,
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|error| ConnectError::Tls(rustls::Error::General(error.to_string())))?;
        let verifier = Arc::new(PgServerVerifier {
            webpki,
            verify,
            provider: provider.clone(),
        });
        Ok(ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth())
    }

    fn root_store(&self) -> Result<RootCertStore, ConnectError> {
        let Some(path) = &self.ssl_root_cert else {
            return Ok(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
        };
        let error = |reason: String| ConnectError::RootCertificate {
            path: path.clone(),
            reason,
        };
        let mut store = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| error(e.to_string()))? {
            let cert = cert.map_err(|e| error(e.to_string()))?;
            store.add(cert).map_err(|e| error(e.to_string()))?;
        }
        if store.is_empty() {
            return Err(error("no certificate in the file".into()));
        }
        Ok(store)
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    ChainOnly,
    Full,
}

/// The certificate checks of libpq's sslmode on top of rustls' WebPKI verifier. The
/// handshake signatures are always verified, so even `require` talks to the key holder of
/// whatever certificate was presented.
#[derive(Debug)]
struct PgServerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    verify: Verify,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PgServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.verify == Verify::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.verify == Verify::ChainOnly => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Used when the connection string sets no `connect_timeout`: an unreachable host or a
/// listener that never answers fails in seconds, not after the OS's TCP timeout or never.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the dedicated migration connection and drives it on the current tokio runtime.
/// `application_name` from `config` is sent at startup, so the session is recognisable in
/// `pg_stat_activity` from its first moment. See [`connect_with`] for the password and the
/// timeout.
pub async fn connect(
    connection_string: &str,
    config: &MigratorConfig,
) -> Result<Client, ConnectError> {
    let mut options = ConnectOptions::parse(connection_string)?;
    options.config.application_name(&config.application_name);
    connect_with(options).await
}

/// [`connect`] with already parsed options. As libpq does, a connection string without a
/// password takes `PGPASSWORD`. The whole opening (TCP connection, TLS handshake, startup
/// and authentication) is bounded by `connect_timeout` ([`DEFAULT_CONNECT_TIMEOUT`] unless
/// the string sets one): tokio-postgres applies it to the TCP connection only, so a server
/// that accepts and never answers would otherwise hang forever.
pub async fn connect_with(mut options: ConnectOptions) -> Result<Client, ConnectError> {
    if options.config.get_password().is_none()
        && let Ok(password) = std::env::var("PGPASSWORD")
        && !password.is_empty()
    {
        options.config.password(password);
    }
    let limit = *options
        .config
        .get_connect_timeout()
        .unwrap_or(&DEFAULT_CONNECT_TIMEOUT);
    options.config.connect_timeout(limit);
    // Each host gets the limit, as in libpq.
    let hosts = u32::try_from(options.config.get_hosts().len().max(1)).unwrap_or(u32::MAX);
    let overall = limit.saturating_mul(hosts);
    let client = tokio::time::timeout(overall, open(&options))
        .await
        .map_err(|_| ConnectError::Timeout {
            limit: overall,
            target: target_of(&options.config),
        })??;
    // The pooler probe opens one more connection, under the same bound.
    let mut probe_options = options.clone();
    probe_options
        .config
        .application_name("migrate-pooler-probe");
    tokio::time::timeout(
        overall,
        super::pooler::refuse_transaction_pooling(
            &client,
            &target_of(&options.config),
            open(&probe_options),
        ),
    )
    .await
    .map_err(|_| ConnectError::Timeout {
        limit: overall,
        target: target_of(&options.config),
    })??;
    Ok(client)
}

async fn open(options: &ConnectOptions) -> Result<Client, ConnectError> {
    let options = options.clone();
    let to_error = |error| ConnectError::Connect {
        target: target_of(&options.config),
        error,
    };
    if options.ssl_mode == SslMode::Disable {
        let (client, connection) = options
            .config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(to_error)?;
        spawn_connection(connection);
        return Ok(client);
    }
    let tls = MakeRustlsConnect::new(options.tls_config()?);
    let (client, connection) = options.config.connect(tls).await.map_err(to_error)?;
    spawn_connection(connection);
    Ok(client)
}

/// Where `config` connects, for messages: `host:port` of each host (IPv6 in brackets), or
/// the Unix socket's path, as libpq names them; comma-separated when there are several
/// (tokio-postgres tries them in order). Never the user or the password.
fn target_of(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    let port_of = |index: usize| match ports {
        [] => 5432,
        [port] => *port,
        ports => ports.get(index).copied().unwrap_or(5432),
    };
    let mut targets: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| match host {
            Host::Tcp(name) if name.contains(':') => format!("[{name}]:{}", port_of(index)),
            Host::Tcp(name) => format!("{name}:{}", port_of(index)),
            Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port_of(index)),
        })
        .collect();
    if targets.is_empty() {
        targets = config
            .get_hostaddrs()
            .iter()
            .enumerate()
            .map(|(index, addr)| match addr {
                std::net::IpAddr::V4(v4) => format!("{v4}:{}", port_of(index)),
                std::net::IpAddr::V6(v6) => format!("[{v6}]:{}", port_of(index)),
            })
            .collect();
    }
    if targets.is_empty() {
        return "no host (the connection string names none)".to_owned();
    }
    targets.join(", ")
}

fn spawn_connection<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "migration connection closed with an error");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_rootcert_are_taken_out_of_urls() {
        let options = ConnectOptions::parse(
            "postgres://u:pw@localhost:5432/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&connect_timeout=5",
        )
        .expect("parses");
        assert_eq!(options.ssl_mode, SslMode::VerifyFull);
        assert_eq!(options.ssl_root_cert, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(options.config.get_dbname(), Some("db"));
        assert!(options.config.get_connect_timeout().is_some());
    }

    #[test]
    fn key_value_strings_are_supported() {
        let options = ConnectOptions::parse("host=localhost user=u sslmode=require dbname=d")
            .expect("parses");
        assert_eq!(options.ssl_mode, SslMode::Require);
        assert_eq!(options.config.get_user(), Some("u"));
    }

    #[test]
    fn errors_never_echo_the_password() {
        for bad in [
            "postgres://u:hunter2@localhost/db?sslmode=nonsense",
            "postgres://u:hunter2@localhost:notaport/db",
            "postgres://u:hunter2@localhost/db?bogus=1",
        ] {
            let error = ConnectOptions::parse(bad).expect_err("invalid");
            assert!(matches!(error, ConnectError::InvalidUrl { .. }));
            assert!(!error.to_string().contains("hunter2"), "{error}");
            assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
        }
        let options = ConnectOptions::parse("postgres://u:hunter2@localhost/db").expect("parses");
        assert!(!format!("{options:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn a_listener_that_never_answers_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts and holds the connection, never sending a byte.
        let holder = std::thread::spawn(move || listener.accept().map(|(socket, _)| socket));
        let started = std::time::Instant::now();
        let options = ConnectOptions::parse(&format!(
            "postgres://u:pw@127.0.0.1:{port}/db?sslmode=disable&connect_timeout=1"
        ))
        .unwrap();
        let error = connect_with(options).await.expect_err("never answers");
        assert!(matches!(error, ConnectError::Timeout { .. }), "{error:?}");
        assert!(
            error.to_string().contains("no complete answer within 1s"),
            "{error}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        drop(holder.join().unwrap());
    }

    #[test]
    fn invalid_strings_say_so_once() {
        let error = ConnectOptions::parse("postgres://u@h:notaport/db").expect_err("bad port");
        let text = error.to_string();
        assert_eq!(
            text.matches("invalid connection string").count(),
            1,
            "{text}"
        );
    }
}
