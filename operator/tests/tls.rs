//! TLS to the test server, which Debian's postgresql package sets up with
//! `ssl = on` and the snakeoil certificate: self-signed, for `localhost`.

mod common;

use std::io::Read;
use std::net::TcpListener;

use schemaop::engine::tls::{TlsMode, TlsSettings};
use schemaop::engine::{Database, Error, SessionSettings};

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
/// Sent in every URL whose connection must fail, and looked for in the errors.
const PASSWORD: &str = "never-in-errors-7Qx";

/// The parts of the test server's admin URL.
struct Server {
    user: String,
    password: String,
    port: u16,
    dbname: String,
}

fn server() -> Server {
    let config: tokio_postgres::Config = common::admin_url()
        .parse()
        .expect("SCHEMAOP_TEST_ADMIN_URL parses");
    Server {
        user: config.get_user().unwrap_or("postgres").to_string(),
        password: String::from_utf8_lossy(config.get_password().unwrap_or_default()).into_owned(),
        port: config.get_ports().first().copied().unwrap_or(5432),
        dbname: config.get_dbname().unwrap_or("postgres").to_string(),
    }
}

/// A URL for the test server reached by `host`, with the test role's
/// password and `params` as its query.
fn url(host: &str, params: &str) -> String {
    let s = server();
    url_with_password(host, &s.password, params)
}

fn url_with_password(host: &str, password: &str, params: &str) -> String {
    let s = server();
    format!(
        "postgres://{}:{password}@{host}:{}/{}?{params}",
        s.user, s.port, s.dbname
    )
}

/// Fails every TLS test at once, and clearly, on a server without TLS.
async fn require_server_tls() {
    let admin = common::connect(&common::admin_url()).await;
    let setting = |name: &'static str| {
        let admin = &admin;
        async move {
            let row = admin
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .unwrap_or_else(|e| panic!("SHOW {name}: {e}"));
            row.get::<_, String>(0)
        }
    };
    assert_eq!(
        setting("ssl").await,
        "on",
        "the test server has ssl = off, and these tests need TLS: set ssl = on with \
         ssl_cert_file = {SNAKEOIL} (Debian's postgresql package does this on install)"
    );
    assert_eq!(
        setting("ssl_cert_file").await,
        SNAKEOIL,
        "these tests trust Debian's snakeoil certificate, which the test server does not use"
    );
}

async fn connect(db: &Database) -> Result<schemaop::engine::connection::Session, Error> {
    db.connect(&SessionSettings::default()).await
}

/// Whether the session runs over TLS, as the server sees it.
async fn session_uses_tls(db: &Database) -> bool {
    let session = connect(db)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", db.redacted()));
    session
        .client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

/// The error of a connection that must fail, checked not to show the password.
async fn connect_error(url: &str) -> String {
    let db = Database::from_url(url).expect("the URL parses");
    let error = match connect(&db).await {
        Ok(_) => panic!("{} connected", db.redacted()),
        Err(error) => error,
    };
    assert!(
        matches!(error, Error::Unreachable { .. }),
        "not Unreachable: {error:?}"
    );
    let text = format!("{error} {error:?}");
    assert!(!text.contains(PASSWORD), "the password shows: {text}");
    error.to_string()
}

#[tokio::test]
async fn require_encrypts_the_session() {
    require_server_tls().await;
    let db = Database::from_url(&url("127.0.0.1", "sslmode=require")).unwrap();
    assert!(session_uses_tls(&db).await);
}

#[tokio::test]
async fn prefer_is_the_default_and_uses_tls() {
    require_server_tls().await;
    let db = Database::from_url(&url("127.0.0.1", "")).unwrap();
    assert_eq!(db.tls_mode(), TlsMode::Prefer);
    assert!(session_uses_tls(&db).await);
}

#[tokio::test]
async fn disable_connects_without_tls() {
    require_server_tls().await;
    let db = Database::from_url(&url("127.0.0.1", "sslmode=disable")).unwrap();
    assert!(!session_uses_tls(&db).await);
}

#[tokio::test]
async fn verify_full_connects_to_the_name_in_the_certificate() {
    require_server_tls().await;
    let db = Database::from_url(&url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"),
    ))
    .unwrap();
    assert!(
        session_uses_tls(&db).await,
        "(Debian makes the snakeoil certificate for the machine's host name when the ssl-cert \
         package is installed; these tests expect it to name localhost)"
    );
}

#[tokio::test]
async fn verify_full_in_a_key_value_string() {
    require_server_tls().await;
    let s = server();
    let text = format!(
        "host=localhost port={} user={} password='{}' dbname={} sslmode=verify-full sslrootcert='{SNAKEOIL}'",
        s.port, s.user, s.password, s.dbname
    );
    let db = Database::from_url(&text).unwrap();
    assert_eq!(db.tls_mode(), TlsMode::VerifyFull);
    assert!(session_uses_tls(&db).await);
}

#[tokio::test]
async fn verify_full_refuses_a_host_the_certificate_does_not_name() {
    require_server_tls().await;
    let error = connect_error(&url_with_password(
        "127.0.0.1",
        PASSWORD,
        &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"),
    ))
    .await;
    assert!(
        error.contains("not valid for the host name 127.0.0.1") && error.contains("localhost"),
        "{error}"
    );
    assert!(error.contains("sslmode=verify-full"), "{error}");
}

#[tokio::test]
async fn verify_ca_accepts_any_host_name() {
    require_server_tls().await;
    let db = Database::from_url(&url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={SNAKEOIL}"),
    ))
    .unwrap();
    assert!(session_uses_tls(&db).await);
}

#[tokio::test]
async fn require_with_a_root_checks_the_chain() {
    require_server_tls().await;
    // As in libpq: require with a root certificate is verify-ca.
    let db = Database::from_url(&url(
        "127.0.0.1",
        &format!("sslmode=require&sslrootcert={SNAKEOIL}"),
    ))
    .unwrap();
    assert!(session_uses_tls(&db).await);
    let other_root = unrelated_root_pem();
    let db = Database::from_url(&url_with_password("127.0.0.1", PASSWORD, "sslmode=require"))
        .unwrap()
        .with_root_certificates(other_root)
        .unwrap();
    let error = connect(&db)
        .await
        .err()
        .expect("an unrelated root is refused");
    let error = error.to_string();
    assert!(
        error.contains("not signed by the given root certificate"),
        "{error}"
    );
    assert!(!error.contains(PASSWORD), "{error}");
}

#[tokio::test]
async fn prefer_falls_back_to_plain_text_when_the_handshake_fails() {
    require_server_tls().await;
    // As in libpq: prefer with a root certificate checks the chain, and
    // connects without TLS when that fails.
    let db = Database::from_url(&url("127.0.0.1", "sslmode=prefer"))
        .unwrap()
        .with_root_certificates(unrelated_root_pem())
        .unwrap();
    assert!(!session_uses_tls(&db).await);
}

#[tokio::test]
async fn verify_full_without_a_root_trusts_only_public_authorities() {
    require_server_tls().await;
    let error = connect_error(&url_with_password(
        "localhost",
        PASSWORD,
        "sslmode=verify-full",
    ))
    .await;
    assert!(
        error.contains("not signed by a public certificate authority")
            && error.contains("sslrootcert"),
        "{error}"
    );
}

#[tokio::test]
async fn a_missing_root_file_is_named() {
    require_server_tls().await;
    let url = url_with_password(
        "localhost",
        PASSWORD,
        "sslmode=verify-full&sslrootcert=/nonexistent/schemaop-ca.pem",
    );
    let error = Database::from_url(&url).expect_err("a missing file fails");
    assert!(matches!(error, Error::InvalidTls { .. }), "{error:?}");
    let text = format!("{error} {error:?}");
    assert!(text.contains("/nonexistent/schemaop-ca.pem"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[tokio::test]
async fn from_parts_with_a_root_from_elsewhere() {
    require_server_tls().await;
    let s = server();
    let pem = std::fs::read(SNAKEOIL).expect("the snakeoil certificate");
    let db = Database::from_parts(
        "localhost",
        s.port,
        &s.dbname,
        &s.user,
        Some(&s.password),
        TlsSettings::new(TlsMode::VerifyFull).with_root_certificates(pem.clone()),
    )
    .unwrap();
    assert!(session_uses_tls(&db).await);
    // The same root, set on a database parsed from a URL.
    let db = Database::from_url(&url("localhost", "sslmode=verify-full"))
        .unwrap()
        .with_root_certificates(pem)
        .unwrap();
    assert!(session_uses_tls(&db).await);
}

#[tokio::test]
async fn require_fails_on_a_server_without_tls() {
    // A stand-in server that declines TLS, as one with ssl = off does: it
    // answers the client's SSLRequest with 'N'.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = std::thread::spawn(move || {
        if let Ok((mut socket, _)) = listener.accept() {
            let mut request = [0; 8];
            if socket.read_exact(&mut request).is_ok() {
                let _ = std::io::Write::write_all(&mut socket, b"N");
            }
        }
    });
    let error = connect_error(&format!(
        "postgres://app:{PASSWORD}@127.0.0.1:{port}/db?sslmode=require"
    ))
    .await;
    assert!(error.contains("does not accept TLS"), "{error}");
    server.join().expect("the stand-in server");
}

/// A public root certificate that did not sign the test server's.
fn unrelated_root_pem() -> Vec<u8> {
    ISRG_ROOT_X1.as_bytes().to_vec()
}

/// Let's Encrypt's root, valid until 2035.
const ISRG_ROOT_X1: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIFazCCA1OgAwIBAgIRAIIQz7DSQONZRGPgu2OCiwAwDQYJKoZIhvcNAQELBQAw\n\
TzELMAkGA1UEBhMCVVMxKTAnBgNVBAoTIEludGVybmV0IFNlY3VyaXR5IFJlc2Vh\n\
cmNoIEdyb3VwMRUwEwYDVQQDEwxJU1JHIFJvb3QgWDEwHhcNMTUwNjA0MTEwNDM4\n\
WhcNMzUwNjA0MTEwNDM4WjBPMQswCQYDVQQGEwJVUzEpMCcGA1UEChMgSW50ZXJu\n\
ZXQgU2VjdXJpdHkgUmVzZWFyY2ggR3JvdXAxFTATBgNVBAMTDElTUkcgUm9vdCBY\n\
MTCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAK3oJHP0FDfzm54rVygc\n\
h77ct984kIxuPOZXoHj3dcKi/vVqbvYATyjb3miGbESTtrFj/RQSa78f0uoxmyF+\n\
0TM8ukj13Xnfs7j/EvEhmkvBioZxaUpmZmyPfjxwv60pIgbz5MDmgK7iS4+3mX6U\n\
A5/TR5d8mUgjU+g4rk8Kb4Mu0UlXjIB0ttov0DiNewNwIRt18jA8+o+u3dpjq+sW\n\
T8KOEUt+zwvo/7V3LvSye0rgTBIlDHCNAymg4VMk7BPZ7hm/ELNKjD+Jo2FR3qyH\n\
B5T0Y3HsLuJvW5iB4YlcNHlsdu87kGJ55tukmi8mxdAQ4Q7e2RCOFvu396j3x+UC\n\
B5iPNgiV5+I3lg02dZ77DnKxHZu8A/lJBdiB3QW0KtZB6awBdpUKD9jf1b0SHzUv\n\
KBds0pjBqAlkd25HN7rOrFleaJ1/ctaJxQZBKT5ZPt0m9STJEadao0xAH0ahmbWn\n\
OlFuhjuefXKnEgV4We0+UXgVCwOPjdAvBbI+e0ocS3MFEvzG6uBQE3xDk3SzynTn\n\
jh8BCNAw1FtxNrQHusEwMFxIt4I7mKZ9YIqioymCzLq9gwQbooMDQaHWBfEbwrbw\n\
qHyGO0aoSCqI3Haadr8faqU9GY/rOPNk3sgrDQoo//fb4hVC1CLQJ13hef4Y53CI\n\
rU7m2Ys6xt0nUW7/vGT1M0NPAgMBAAGjQjBAMA4GA1UdDwEB/wQEAwIBBjAPBgNV\n\
HRMBAf8EBTADAQH/MB0GA1UdDgQWBBR5tFnme7bl5AFzgAiIyBpY9umbbjANBgkq\n\
hkiG9w0BAQsFAAOCAgEAVR9YqbyyqFDQDLHYGmkgJykIrGF1XIpu+ILlaS/V9lZL\n\
ubhzEFnTIZd+50xx+7LSYK05qAvqFyFWhfFQDlnrzuBZ6brJFe+GnY+EgPbk6ZGQ\n\
3BebYhtF8GaV0nxvwuo77x/Py9auJ/GpsMiu/X1+mvoiBOv/2X/qkSsisRcOj/KK\n\
NFtY2PwByVS5uCbMiogziUwthDyC3+6WVwW6LLv3xLfHTjuCvjHIInNzktHCgKQ5\n\
ORAzI4JMPJ+GslWYHb4phowim57iaztXOoJwTdwJx4nLCgdNbOhdjsnvzqvHu7Ur\n\
TkXWStAmzOVyyghqpZXjFaH3pO3JLF+l+/+sKAIuvtd7u+Nxe5AW0wdeRlN8NwdC\n\
jNPElpzVmbUq4JUagEiuTDkHzsxHpFKVK7q4+63SM1N95R1NbdWhscdCb+ZAJzVc\n\
oyi3B43njTOQ5yOf+1CceWxG1bQVs5ZufpsMljq4Ui0/1lvh+wjChP4kqKOJ2qxq\n\
4RgqsahDYVvTH9w7jXbyLeiNdd8XM2w9U/t7y0Ff/9yi0GE44Za4rF2LN9d11TPA\n\
mRGunUHBcnWEvgJBQl9nJEiU0Zsnvgc/ubhPgXRR4Xq37Z0j4r7g1SgEEzwxA57d\n\
emyPxgcYxn/eR44/KJ4EBs+lVDR3veyJm+kXQ99b21/+jh5Xos1AnX5iItreGCc=\n\
-----END CERTIFICATE-----\n\
";
