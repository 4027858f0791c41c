//! TLS to PostgreSQL on rustls, with libpq's `sslmode` and `sslrootcert`
//! meanings. tokio-postgres knows only `disable`, `prefer` and `require`, and
//! leaves checking the server's certificate to the connector: this module
//! reads the settings it does not know and builds a connector that checks as
//! much as the mode asks for.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::task::JoinHandle;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::connection::describe_io_error;
use super::error::{Error, Result};

/// How a connection uses TLS, with libpq's `sslmode` names and meanings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Plain text.
    Disable,
    /// TLS when the server offers it, plain text when it does not or when
    /// the handshake fails. libpq's default.
    #[default]
    Prefer,
    /// TLS or no connection. The certificate is not checked unless root
    /// certificates are given; then its chain is, as with `VerifyCa`.
    Require,
    /// TLS, with a certificate signed by a root certificate, for any host.
    VerifyCa,
    /// TLS, with a certificate signed by a root certificate that names the
    /// host connected to.
    VerifyFull,
}

impl TlsMode {
    pub const ALL: [TlsMode; 5] = [
        TlsMode::Disable,
        TlsMode::Prefer,
        TlsMode::Require,
        TlsMode::VerifyCa,
        TlsMode::VerifyFull,
    ];

    /// The mode for one of libpq's `sslmode` values.
    pub fn parse(value: &str) -> Option<TlsMode> {
        TlsMode::ALL.into_iter().find(|mode| mode.as_str() == value)
    }

    /// libpq's name, as in `sslmode=verify-full`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    /// tokio-postgres decides only whether to ask for TLS and whether it may
    /// go on without; checking the certificate is the connector's part.
    fn driver_mode(self) -> SslMode {
        match self {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        }
    }

    fn from_driver_mode(mode: SslMode) -> TlsMode {
        match mode {
            SslMode::Disable => TlsMode::Disable,
            SslMode::Require => TlsMode::Require,
            _ => TlsMode::Prefer,
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a connection's TLS needs: the mode, and the root (CA) certificates
/// to check the server's certificate against.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: TlsMode,
    /// One or more PEM certificates. `None` checks `verify-ca` and
    /// `verify-full` against the public roots of Mozilla's list, and checks
    /// nothing for `prefer` and `require`.
    pub root_certificates: Option<Vec<u8>>,
}

impl TlsSettings {
    pub fn new(mode: TlsMode) -> TlsSettings {
        TlsSettings {
            mode,
            root_certificates: None,
        }
    }

    pub fn with_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> TlsSettings {
        self.root_certificates = Some(pem.into());
        self
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("mode", &self.mode)
            .field(
                "root_certificates",
                &self
                    .root_certificates
                    .as_ref()
                    .map(|pem| format!("{} bytes of PEM", pem.len())),
            )
            .finish()
    }
}

/// Where the root certificates came from, to name in errors.
pub(crate) const GIVEN_ROOTS: &str = "the given root certificate (sslrootcert or caSecretRef)";

/// A connection string with `sslmode` and `sslrootcert` taken out, which
/// tokio-postgres's parser would refuse or misread, and their values.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TlsParams {
    pub rest: String,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
}

impl TlsParams {
    /// Takes the TLS settings out of a `postgres://` URL or a `key=value`
    /// string. Anything it cannot read is left as it is, for tokio-postgres
    /// to report.
    pub(crate) fn strip(connection: &str) -> TlsParams {
        strip_url(connection).unwrap_or_else(|| strip_key_values(connection))
    }

    /// The settings these values ask for; reads the `sslrootcert` file.
    pub(crate) fn settings(&self) -> Result<TlsSettings> {
        let system_roots = self.sslrootcert.as_deref() == Some("system");
        let mode = match self.sslmode.as_deref() {
            Some(value) => TlsMode::parse(value).ok_or_else(|| invalid(unknown_mode()))?,
            // As in libpq: trusting the system's roots only makes sense if
            // the host name is checked too.
            None if system_roots => TlsMode::VerifyFull,
            None => TlsMode::default(),
        };
        if system_roots && mode != TlsMode::VerifyFull {
            return Err(invalid(format!(
                "sslrootcert=system trusts every public certificate authority, so it needs \
                 sslmode=verify-full, not {mode}; use verify-full or give a root certificate file"
            )));
        }
        let root_certificates = match self.sslrootcert.as_deref() {
            // libpq does not read the file when it will not use TLS.
            _ if mode == TlsMode::Disable => None,
            None | Some("system") => None,
            Some(path) => Some(read_root_file(path)?),
        };
        Ok(TlsSettings {
            mode,
            root_certificates,
        })
    }

    /// What to call the root certificates in errors.
    pub(crate) fn root_origin(&self) -> String {
        match self.sslrootcert.as_deref() {
            Some(path) if path != "system" => {
                format!("the root certificate file {path} (sslrootcert)")
            }
            _ => GIVEN_ROOTS.to_string(),
        }
    }
}

/// The value is not repeated: a misplaced password may be what is there.
fn unknown_mode() -> String {
    let known: Vec<&str> = TlsMode::ALL.iter().map(|mode| mode.as_str()).collect();
    format!("unknown sslmode; use one of {}", known.join(", "))
}

fn read_root_file(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| {
        invalid(format!(
            "cannot read the root certificate file {path} (sslrootcert): {error}; give the path \
             of a readable PEM file holding the certificate of the CA that signed the server's \
             certificate"
        ))
    })
}

fn invalid(reason: String) -> Error {
    Error::InvalidTls { reason }
}

/// The URL form, read as tokio-postgres reads it: the credentials run to the
/// first `@`, and the query starts at the first `?` after them. `None` when
/// the string is not a URL.
fn strip_url(url: &str) -> Option<TlsParams> {
    let after_scheme = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))?;
    let authority_start = url.len() - after_scheme.len();
    let search_from = authority_start + after_scheme.find('@').map_or(0, |at| at + 1);
    let Some(question) = url[search_from..].find('?') else {
        return Some(TlsParams {
            rest: url.to_string(),
            ..TlsParams::default()
        });
    };
    let (base, query) = (
        &url[..search_from + question],
        &url[search_from + question + 1..],
    );

    let mut params = TlsParams::default();
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let decoded = pair
            .split_once('=')
            .and_then(|(key, value)| Some((percent_decode(key)?, percent_decode(value)?)));
        match decoded {
            Some((key, value)) if key == "sslmode" => params.sslmode = Some(value),
            Some((key, value)) if key == "sslrootcert" => params.sslrootcert = Some(value),
            _ => kept.push(pair),
        }
    }
    params.rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Some(params)
}

/// `%XX` escapes as tokio-postgres decodes them, with the crate it uses, so
/// both read the same value: anything else, including a `%` not followed by
/// two hex digits, stands for itself.
fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|value| value.into_owned())
}

fn strip_key_values(connection: &str) -> TlsParams {
    let Some(pairs) = KeyValues::new(connection).pairs() else {
        return TlsParams {
            rest: connection.to_string(),
            ..TlsParams::default()
        };
    };
    let mut params = TlsParams::default();
    let mut rest = String::with_capacity(connection.len());
    let mut copied_to = 0;
    for pair in pairs {
        let slot = match pair.key.as_str() {
            "sslmode" => &mut params.sslmode,
            "sslrootcert" => &mut params.sslrootcert,
            _ => continue,
        };
        *slot = Some(pair.value);
        rest.push_str(&connection[copied_to..pair.span.start]);
        copied_to = pair.span.end;
    }
    rest.push_str(&connection[copied_to..]);
    // Not trimmed: a trailing `\ ` belongs to the value before it.
    params.rest = rest;
    params
}

/// One `key = value` of a connection string, with where it stands in it.
struct Pair {
    key: String,
    value: String,
    span: Range<usize>,
}

/// A reader of `key=value` connection strings that follows tokio-postgres's
/// own, so that what it takes out is exactly what that parser would read.
struct KeyValues<'a> {
    text: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
}

impl<'a> KeyValues<'a> {
    fn new(text: &'a str) -> Self {
        KeyValues {
            text,
            chars: text.char_indices().peekable(),
        }
    }

    /// Every pair, or `None` where tokio-postgres would report an error.
    fn pairs(mut self) -> Option<Vec<Pair>> {
        let mut pairs = Vec::new();
        loop {
            self.skip_whitespace();
            let start = self.position();
            let key = self.take_while(|c| !c.is_whitespace() && c != '=');
            if key.is_empty() {
                // tokio-postgres stops reading here too.
                return Some(pairs);
            }
            self.skip_whitespace();
            if self.chars.next().map(|(_, c)| c) != Some('=') {
                return None;
            }
            self.skip_whitespace();
            let value = self.value()?;
            pairs.push(Pair {
                key: key.to_string(),
                value,
                span: start..self.position(),
            });
        }
    }

    fn position(&mut self) -> usize {
        self.chars.peek().map_or(self.text.len(), |&(i, _)| i)
    }

    fn skip_whitespace(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.position();
        while self.chars.next_if(|&(_, c)| keep(c)).is_some() {}
        &self.text[start..self.position()]
    }

    /// A quoted value runs to the next unescaped `'`; a plain one to the next
    /// white space. A backslash escapes the character after it in both.
    fn value(&mut self) -> Option<String> {
        let quoted = self.chars.next_if(|&(_, c)| c == '\'').is_some();
        let mut value = String::new();
        loop {
            match self.chars.peek().map(|&(_, c)| c) {
                Some('\'') if quoted => {
                    self.chars.next();
                    return Some(value);
                }
                Some(c) if c.is_whitespace() && !quoted => break,
                None if quoted => return None,
                None => break,
                Some(c) => {
                    self.chars.next();
                    if c == '\\' {
                        value.extend(self.chars.next().map(|(_, escaped)| escaped));
                    } else {
                        value.push(c);
                    }
                }
            }
        }
        (!value.is_empty()).then_some(value)
    }
}

/// The TLS half of a `Database`: built once, cheap to clone, since the
/// rustls configuration sits behind an `Arc`.
#[derive(Clone)]
pub(crate) struct Tls {
    mode: TlsMode,
    /// Whether the certificate is checked against certificates given by the
    /// user rather than the public roots, which errors tell apart.
    given_roots: bool,
    connector: Connector,
}

#[derive(Clone)]
enum Connector {
    Plain,
    Rustls(MakeRustlsConnect),
    /// rustls refused its own configuration; said at connect time, where
    /// `Database::from_config` has a way to say it.
    Unusable(Arc<str>),
}

impl Connector {
    fn new(mode: TlsMode, roots: Option<RootCertStore>) -> Result<Connector, rustls::Error> {
        Ok(match Check::for_mode(mode, roots) {
            None => Connector::Plain,
            Some(check) => Connector::Rustls(MakeRustlsConnect::new(client_config(check)?)),
        })
    }
}

fn setup_failed(error: &rustls::Error) -> String {
    format!("cannot set up TLS: {error}")
}

/// An open connection and the task that drives it.
pub(crate) type Opened = (Client, JoinHandle<()>);

/// Why a connection could not be opened.
pub(crate) enum OpenError {
    /// A TLS failure, described for a person.
    Tls(String),
    Driver(tokio_postgres::Error),
}

impl Tls {
    /// `root_origin` names the root certificates in errors.
    pub(crate) fn new(settings: &TlsSettings, root_origin: &str) -> Result<Tls> {
        let roots = match (&settings.root_certificates, settings.mode) {
            (_, TlsMode::Disable) | (None, _) => None,
            (Some(pem), _) => Some(root_store(pem, root_origin)?),
        };
        Ok(Tls {
            mode: settings.mode,
            given_roots: roots.is_some(),
            connector: Connector::new(settings.mode, roots)
                .map_err(|error| invalid(setup_failed(&error)))?,
        })
    }

    /// For a `Config` built by hand, which has only tokio-postgres's modes.
    pub(crate) fn for_driver_mode(mode: SslMode) -> Tls {
        let mode = TlsMode::from_driver_mode(mode);
        Tls {
            mode,
            given_roots: false,
            connector: Connector::new(mode, None)
                .unwrap_or_else(|error| Connector::Unusable(setup_failed(&error).into())),
        }
    }

    pub(crate) fn mode(&self) -> TlsMode {
        self.mode
    }

    /// Opens a connection with `config` and spawns its driver.
    pub(crate) async fn open(&self, mut config: Config) -> Result<Opened, OpenError> {
        config.ssl_mode(self.mode.driver_mode());
        let make = match &self.connector {
            Connector::Plain => return spawn(&config, NoTls).await.map_err(OpenError::Driver),
            Connector::Unusable(reason) => return Err(OpenError::Tls(reason.to_string())),
            Connector::Rustls(make) => make.clone(),
        };
        let error = match spawn(&config, make).await {
            Ok(opened) => return Ok(opened),
            Err(error) => error,
        };
        // libpq's prefer also falls back to plain text when the handshake
        // fails, not only when the server declines TLS.
        if self.mode == TlsMode::Prefer
            && let Some(failure) = rustls_error(&error)
        {
            // Worth a line: the session's data now travels in plain text.
            tracing::warn!(
                reason = %self.describe_rustls_error(failure),
                "TLS failed under sslmode=prefer; connecting without TLS"
            );
            config.ssl_mode(SslMode::Disable);
            return spawn(&config, NoTls).await.map_err(OpenError::Driver);
        }
        match self.describe_failure(&error, over_unix_sockets(&config)) {
            Some(reason) => Err(OpenError::Tls(reason)),
            None => Err(OpenError::Driver(error)),
        }
    }

    /// What went wrong with TLS, if it was TLS, in terms of what to change.
    fn describe_failure(
        &self,
        error: &tokio_postgres::Error,
        over_unix_sockets: bool,
    ) -> Option<String> {
        if let Some(error) = rustls_error(error) {
            return Some(self.describe_rustls_error(error));
        }
        let text = describe_io_error(error);
        // Over a Unix socket the server declines TLS whatever its settings.
        let declined = text.contains("server does not support TLS");
        if (declined && over_unix_sockets) || text.contains("no hostname provided for TLS") {
            return Some(format!(
                "PostgreSQL has no TLS over a Unix socket, which sslmode={} needs; connect over \
                 TCP, or use sslmode=prefer or disable",
                self.mode
            ));
        }
        if declined {
            return Some(format!(
                "the server does not accept TLS connections, which sslmode={} needs; turn on ssl \
                 in the server's configuration, or use sslmode=prefer or disable to connect \
                 without TLS",
                self.mode
            ));
        }
        // tokio-postgres's text for every TLS failure.
        text.starts_with("error performing TLS handshake")
            .then(|| format!("the TLS handshake failed: {text}"))
    }

    fn describe_rustls_error(&self, error: &rustls::Error) -> String {
        match error {
            rustls::Error::InvalidCertificate(error) => self.describe_certificate_error(error),
            rustls::Error::AlertReceived(alert) => format!(
                "the server ended the TLS handshake ({alert:?}); see the server's log for why"
            ),
            other => format!("the TLS handshake failed: {other}"),
        }
    }

    fn describe_certificate_error(&self, error: &CertificateError) -> String {
        match error {
            CertificateError::UnknownIssuer if self.given_roots => {
                "the server's certificate is not signed by the given root certificate; check \
                 that sslrootcert (or caSecretRef) holds the certificate of the CA that signed it"
                    .to_string()
            }
            CertificateError::UnknownIssuer => {
                "the server's certificate is not signed by a public certificate authority; give \
                 the certificate of the CA that signed it with sslrootcert (or caSecretRef)"
                    .to_string()
            }
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => format!(
                "the server's certificate is not valid for the host name {} (it names {}); \
                 connect by a name it holds, or use sslmode=verify-ca to check only who signed it",
                expected.to_str(),
                presented_names(presented)
            ),
            CertificateError::NotValidForName => {
                "the server's certificate is not valid for the host name connected to; connect by \
                 a name it holds, or use sslmode=verify-ca to check only who signed it"
                    .to_string()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired; renew it on the server".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet; check the clocks of this machine and \
                 of the server"
                    .to_string()
            }
            other => format!("the server's certificate was refused: {other}"),
        }
    }
}

fn over_unix_sockets(config: &Config) -> bool {
    let hosts = config.get_hosts();
    !hosts.is_empty() && hosts.iter().all(|host| !matches!(host, Host::Tcp(_)))
}

/// rustls gives the certificate's names in their debug form, such as
/// `DnsName("db.example")`; a person wants `db.example`.
fn presented_names(presented: &[String]) -> String {
    let plain = |name: &str| {
        let inner = name
            .strip_prefix("DnsName(\"")
            .and_then(|rest| rest.strip_suffix("\")"))
            .or_else(|| name.strip_prefix("IpAddress(")?.strip_suffix(')'));
        inner.unwrap_or(name).to_string()
    };
    match presented {
        [] => "no host name".to_string(),
        names => names
            .iter()
            .map(|name| plain(name))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

async fn spawn<T>(config: &Config, tls: T) -> Result<Opened, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await?;
    let driver = tokio::spawn(async move {
        // The error, if any, surfaces on the client's next call.
        let _ = connection.await;
    });
    Ok((client, driver))
}

/// The rustls error behind a driver error: tokio-rustls wraps it in an
/// `io::Error`, whose `source()` skips it, so look inside those.
fn rustls_error(error: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        if let Some(found) = current.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        let inner = current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if inner.is_some() {
            return inner;
        }
        source = current.source();
    }
    None
}

fn root_store(pem: &[u8], origin: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate = certificate
            .map_err(|e| invalid(format!("{origin} is not valid PEM: {e}; {PEM_HINT}")))?;
        roots.add(certificate).map_err(|e| {
            invalid(format!(
                "{origin} holds a certificate that cannot be a root: {e}; {PEM_HINT}"
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(invalid(format!(
            "{origin} holds no certificate; {PEM_HINT}"
        )));
    }
    Ok(roots)
}

const PEM_HINT: &str = "give the certificate of the CA that signed the server's certificate, \
                        in PEM form (-----BEGIN CERTIFICATE-----)";

/// How much of the server's certificate to check.
enum Check {
    /// Nothing: encryption without authentication, libpq's `require`.
    Nothing,
    /// That it chains to one of the roots, for any host name.
    Chain(Arc<RootCertStore>),
    /// That it chains to one of the roots and names the host.
    ChainAndName(Arc<RootCertStore>),
}

impl Check {
    /// `None` when the mode uses no TLS.
    fn for_mode(mode: TlsMode, roots: Option<RootCertStore>) -> Option<Check> {
        let public_roots = || RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Some(match mode {
            TlsMode::Disable => return None,
            // As in libpq, given roots make prefer and require check the chain.
            TlsMode::Prefer | TlsMode::Require => match roots {
                Some(roots) => Check::Chain(Arc::new(roots)),
                None => Check::Nothing,
            },
            TlsMode::VerifyCa => Check::Chain(Arc::new(roots.unwrap_or_else(public_roots))),
            TlsMode::VerifyFull => {
                Check::ChainAndName(Arc::new(roots.unwrap_or_else(public_roots)))
            }
        })
    }
}

fn client_config(check: Check) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder =
        ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let builder = match check {
        Check::ChainAndName(roots) => builder.with_root_certificates(roots),
        Check::Chain(roots) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(RelaxedVerifier {
                chain_to: Some(roots),
                algorithms,
            })),
        Check::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(RelaxedVerifier {
                chain_to: None,
                algorithms,
            })),
    };
    let mut config = builder.with_no_client_auth();
    // PostgreSQL 17 checks the protocol name when the client sends one, and
    // needs it for sslnegotiation=direct; older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// The checks rustls's own verifier cannot be told to make: for `prefer`
/// and `require` without roots, no check of the certificate at all; for
/// libpq's `verify-ca`, the chain to the roots but not the host name, for
/// servers reached by a name or address their certificate does not hold.
/// Either way the handshake's signatures are checked: they prove the server
/// holds the key of the certificate it sent, which channel binding relies on.
#[derive(Debug)]
struct RelaxedVerifier {
    /// `None` takes any certificate.
    chain_to: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for RelaxedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.chain_to {
            let certificate = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &certificate,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(connection: &str) -> (String, Option<&'static str>, Option<String>) {
        let params = TlsParams::strip(connection);
        let mode = params
            .sslmode
            .as_deref()
            .and_then(TlsMode::parse)
            .map(TlsMode::as_str);
        (params.rest, mode, params.sslrootcert)
    }

    #[test]
    fn modes_have_libpq_names() {
        for mode in TlsMode::ALL {
            assert_eq!(TlsMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(TlsMode::parse("allow"), None);
        assert_eq!(TlsMode::default(), TlsMode::Prefer);
    }

    #[test]
    fn url_tls_params_are_taken_out() {
        assert_eq!(
            strip("postgres://app:pw@db:5432/orders?sslmode=verify-full&sslrootcert=/ca.pem"),
            (
                "postgres://app:pw@db:5432/orders".into(),
                Some("verify-full"),
                Some("/ca.pem".into())
            )
        );
        assert_eq!(
            strip("postgresql://db/orders?application_name=x&sslmode=verify-ca&connect_timeout=3"),
            (
                "postgresql://db/orders?application_name=x&connect_timeout=3".into(),
                Some("verify-ca"),
                None
            )
        );
    }

    #[test]
    fn url_values_are_percent_decoded() {
        let (rest, mode, root) =
            strip("postgres://db/x?sslrootcert=%2Fetc%2Fmy%20certs%2Fca.pem&sslmode=require");
        assert_eq!(rest, "postgres://db/x");
        assert_eq!(mode, Some("require"));
        assert_eq!(root.as_deref(), Some("/etc/my certs/ca.pem"));
    }

    #[test]
    fn url_query_starts_after_the_credentials() {
        // A `?` in the password is part of it, as tokio-postgres reads it.
        let (rest, mode, _) = strip("postgres://app:p?w@db/x?sslmode=disable");
        assert_eq!(rest, "postgres://app:p?w@db/x");
        assert_eq!(mode, Some("disable"));
    }

    #[test]
    fn a_url_without_tls_params_is_unchanged() {
        for url in [
            "postgres://app:pw@db/x",
            "postgres://app:pw@db/x?application_name=a",
            "postgres://db?sslnegotiation=postgres&",
        ] {
            assert_eq!(strip(url), (url.to_string(), None, None));
        }
    }

    #[test]
    fn key_value_tls_params_are_taken_out() {
        assert_eq!(
            strip("host=db sslmode=verify-full user=app sslrootcert=/ca.pem password=pw"),
            (
                "host=db  user=app  password=pw".into(),
                Some("verify-full"),
                Some("/ca.pem".into())
            )
        );
        assert_eq!(
            strip("sslmode = require host=db"),
            (" host=db".into(), Some("require"), None)
        );
    }

    #[test]
    fn key_value_quotes_and_escapes_are_read() {
        let (rest, mode, root) = strip(
            r"password='it\'s' host=db sslrootcert='/etc/my certs/ca\'s.pem' sslmode=verify\-ca",
        );
        assert_eq!(rest, r"password='it\'s' host=db  ");
        assert_eq!(mode, Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/etc/my certs/ca's.pem"));
    }

    #[test]
    fn a_trailing_escaped_space_stays_in_its_value() {
        let (rest, mode, _) = strip(r"sslmode=require password=pw\ ");
        assert_eq!(rest, r" password=pw\ ");
        assert_eq!(mode, Some("require"));
    }

    #[test]
    fn an_unreadable_key_value_string_is_left_for_the_driver() {
        let text = "host=db sslmode=require password='unterminated";
        assert_eq!(strip(text), (text.to_string(), None, None));
    }

    #[test]
    fn an_unknown_mode_names_the_known_ones_but_not_itself() {
        let params = TlsParams {
            sslmode: Some("hunter2".into()),
            ..TlsParams::default()
        };
        let error = params.settings().unwrap_err().to_string();
        assert!(error.contains("unknown sslmode"), "{error}");
        assert!(error.contains("verify-full"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn system_roots_need_verify_full() {
        let system = |mode: Option<&str>| TlsParams {
            sslmode: mode.map(str::to_string),
            sslrootcert: Some("system".into()),
            ..TlsParams::default()
        };
        let settings = system(None).settings().unwrap();
        assert_eq!(settings, TlsSettings::new(TlsMode::VerifyFull));
        let error = system(Some("require")).settings().unwrap_err().to_string();
        assert!(error.contains("sslmode=verify-full"), "{error}");
    }

    #[test]
    fn a_missing_root_file_is_named() {
        let params = TlsParams {
            sslmode: Some("verify-full".into()),
            sslrootcert: Some("/nonexistent/ca.pem".into()),
            ..TlsParams::default()
        };
        let error = params.settings().unwrap_err();
        assert!(matches!(error, Error::InvalidTls { .. }), "{error}");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn roots_must_be_pem_certificates() {
        for pem in [
            &b"not a certificate"[..],
            b"-----BEGIN CERTIFICATE-----\nAAAA\n",
        ] {
            let settings = TlsSettings::new(TlsMode::VerifyFull).with_root_certificates(pem);
            let Err(error) = Tls::new(&settings, GIVEN_ROOTS) else {
                panic!("{settings:?} was taken");
            };
            assert!(error.to_string().contains("PEM"), "{error}");
        }
    }

    #[test]
    fn certificate_names_are_shown_plainly() {
        let names = [
            r#"DnsName("db.example")"#.to_string(),
            "IpAddress(10.0.0.7)".to_string(),
            "DirectoryName".to_string(),
        ];
        assert_eq!(
            presented_names(&names),
            "db.example, 10.0.0.7, DirectoryName"
        );
        assert_eq!(presented_names(&[]), "no host name");
    }

    #[test]
    fn every_mode_builds_a_connector() {
        for mode in TlsMode::ALL {
            let tls = Tls::new(&TlsSettings::new(mode), GIVEN_ROOTS).unwrap();
            assert_eq!(tls.mode(), mode);
            assert_eq!(
                matches!(tls.connector, Connector::Plain),
                mode == TlsMode::Disable
            );
        }
    }
}
