//! TLS to a source, as production runs it: the FHIR simulator behind a server certificate from a private CA, asking
//! for a client certificate, offering HTTP/2 and HTTP/1.1 in the handshake. The connector must trust that CA only
//! when its config gives it, present its identity for mutual TLS, and speak the HTTP version ALPN settles on.

use std::sync::Arc;

use childgraph_connectors::{Connector, ConnectorError, FhirConnector, HttpVersion, SourceConfig};
use childgraph_simulators::population::{Population, PopulationConfig};
use childgraph_simulators::{FaultState, Faults, SimulatorKind, cast};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A private CA, a server certificate for 127.0.0.1 and a client identity, all signed by it.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_der: Vec<u8>,
    client_identity_pem: String,
}

impl Pki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().expect("a key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "childgraph test CA");
        let ca = ca_params.self_signed(&ca_key).expect("a CA");

        let server_key = KeyPair::generate().expect("a key");
        let mut server_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        server_params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server_params
            .signed_by(&server_key, &ca, &ca_key)
            .expect("a server certificate");

        let client_key = KeyPair::generate().expect("a key");
        let mut client_params =
            CertificateParams::new(vec!["childgraph".to_owned()]).expect("params");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params
            .signed_by(&client_key, &ca, &ca_key)
            .expect("a client certificate");

        Self {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server_chain: vec![server.der().clone()],
            server_key_der: server_key.serialize_der(),
            client_identity_pem: format!("{}{}", client.pem(), client_key.serialize_pem()),
        }
    }
}

/// The health simulator on `https://127.0.0.1:PORT`, requiring a client certificate from the CA; its request
/// counters are in the returned fault state.
async fn serve(pki: &Pki) -> (url::Url, Arc<FaultState>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).expect("the CA as a root");
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("a client verifier");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_client_cert_verifier(clients)
        .with_single_cert(
            pki.server_chain.clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key_der.clone())),
        )
        .expect("the server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let population = Arc::new(Population::generate(&PopulationConfig {
        children: 20,
        ..PopulationConfig::default()
    }));
    let faults = Arc::new(FaultState::new(Faults::default()));
    let app = childgraph_simulators::router(SimulatorKind::Health, population, faults.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("an address").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A handshake the client gives up on (an untrusted CA, no identity) just ends this connection.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(
                    hyper_util::rt::TokioIo::new(tls),
                    hyper_util::service::TowerToHyperService::new(app),
                )
                .await;
            });
        }
    });
    let base = url::Url::parse(&format!("https://127.0.0.1:{port}/fhir")).expect("a URL");
    (base, faults)
}

fn config(base: &url::Url, pki: &Pki, version: HttpVersion) -> SourceConfig {
    let mut config = SourceConfig::new(base.clone());
    config.ca_certificate_pem = Some(pki.ca_pem.clone().into_bytes());
    config.client_identity_pem = Some(pki.client_identity_pem.clone().into_bytes());
    config.http_version = version;
    // A failed handshake is not retried into the next case.
    config.retry.max_retries = 0;
    config
}

async fn amelia(config: SourceConfig) -> Result<Vec<String>, ConnectorError> {
    let connector = FhirConnector::new(config).expect("a connector");
    let id = cast::AMELIA
        .health_id
        .expect("Amelia is in health")
        .to_owned();
    let records = connector.records(&[id]).await?;
    Ok(records.into_iter().filter_map(|r| r.family_name).collect())
}

#[tokio::test]
async fn a_source_behind_a_private_ca_and_mutual_tls_is_read_over_the_http_version_alpn_settles() {
    let pki = Pki::new();
    let (base, counters) = serve(&pki).await;

    // `auto` offers HTTP/2 in the handshake, and this source takes it.
    let families = amelia(config(&base, &pki, HttpVersion::Auto))
        .await
        .expect("read over TLS");
    assert_eq!(families, ["Hartley"]);
    let sent = counters.requests();
    assert!(sent > 0);
    assert_eq!(counters.http2_requests(), sent);

    // `http2` requires it, and gets it.
    let families = amelia(config(&base, &pki, HttpVersion::Http2))
        .await
        .expect("read over TLS");
    assert_eq!(families, ["Hartley"]);
    assert_eq!(counters.http2_requests(), counters.requests());

    // `http1` offers only HTTP/1.1.
    let before = counters.http2_requests();
    let families = amelia(config(&base, &pki, HttpVersion::Http1))
        .await
        .expect("read over TLS");
    assert_eq!(families, ["Hartley"]);
    assert!(counters.requests() > sent);
    assert_eq!(counters.http2_requests(), before);
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_when_configured_and_the_identity_is_presented() {
    let pki = Pki::new();
    let (base, counters) = serve(&pki).await;

    // Without the CA, the public roots alone do not trust the source.
    let mut untrusted = config(&base, &pki, HttpVersion::Auto);
    untrusted.ca_certificate_pem = None;
    assert!(amelia(untrusted).await.is_err());

    // Without an identity, the source refuses the handshake.
    let mut anonymous = config(&base, &pki, HttpVersion::Auto);
    anonymous.client_identity_pem = None;
    assert!(amelia(anonymous).await.is_err());
    assert_eq!(
        counters.requests(),
        0,
        "no request got through a failed handshake"
    );

    // With both, it answers.
    let families = amelia(config(&base, &pki, HttpVersion::Auto))
        .await
        .expect("read over TLS");
    assert_eq!(families, ["Hartley"]);
}
