//! TLS and mutual TLS, over HTTP and gRPC, against the testing receiver serving certificates
//! made in the test; verification failures are clear errors and counted failures.

mod common;

use common::certs::{write_temp, Ca};
use tracing::info;
use tracing_subscriber::layer::SubscriberExt;
use zenml_otel::testing::{OtlpReceiver, TlsOptions};
use zenml_otel::{OtelLogStoreConfig, Protocol, ZenmlOtelLayer};

struct Setup {
    receiver: OtlpReceiver,
    ca_file: std::path::PathBuf,
}

fn tls_receiver(ca: &Ca, client_ca: Option<&Ca>) -> Setup {
    let server = ca.server();
    let receiver = OtlpReceiver::start_tls(TlsOptions {
        cert_chain_pem: server.cert_pem.into_bytes(),
        key_pem: server.key_pem.into_bytes(),
        client_ca_pem: client_ca.map(|ca| ca.pem.clone().into_bytes()),
    })
    .unwrap();
    Setup {
        receiver,
        ca_file: write_temp("ca.pem", &ca.pem),
    }
}

/// Logs three lines through a layer built from `config` and returns the flush result and stats.
fn log_three(
    config: OtelLogStoreConfig,
) -> (Result<(), zenml_otel::Error>, zenml_otel::ExportStats) {
    let layer = ZenmlOtelLayer::new(config).expect("valid config");
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..3 {
            info!(i, "over tls");
        }
    });
    let result = handle.force_flush();
    (result, handle.stats())
}

fn config(setup: &Setup, protocol: Protocol) -> OtelLogStoreConfig {
    let endpoint = match protocol {
        Protocol::Grpc => setup.receiver.grpc_endpoint(),
        _ => setup.receiver.endpoint(),
    };
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    OtelLogStoreConfig {
        endpoint: Some(endpoint),
        protocol,
        // Failures are retried until this runs out: keep the failing cases quick.
        export_timeout_millis: 1000,
        ..OtelLogStoreConfig::default()
    }
}

const PROTOCOLS: [Protocol; 2] = [Protocol::HttpProtobuf, Protocol::Grpc];

fn protocols() -> Vec<Protocol> {
    common::built(PROTOCOLS)
}

#[test]
#[cfg_attr(not(feature = "tls"), ignore = "needs the `tls` feature")]
fn a_custom_ca_verifies_the_collector() {
    let ca = Ca::new("test CA");
    for protocol in protocols() {
        let setup = tls_receiver(&ca, None);
        let (result, stats) = log_three(OtelLogStoreConfig {
            certificate_file: Some(setup.ca_file.clone()),
            ..config(&setup, protocol)
        });
        result.unwrap_or_else(|e| panic!("{protocol:?}: {e}"));
        assert_eq!(stats.exported, 3, "{protocol:?}");
        assert_eq!(setup.receiver.record_count(), 3, "{protocol:?}");
    }
}

#[test]
#[cfg_attr(not(feature = "tls"), ignore = "needs the `tls` feature")]
fn a_wrong_ca_fails_clearly_and_is_counted() {
    let ca = Ca::new("real CA");
    let other = Ca::new("other CA");
    for protocol in protocols() {
        let setup = tls_receiver(&ca, None);
        let (result, stats) = log_three(OtelLogStoreConfig {
            certificate_file: Some(write_temp("other.pem", &other.pem)),
            ..config(&setup, protocol)
        });
        let error = result
            .expect_err("an unknown CA must not verify")
            .to_string();
        assert!(
            ["certificate", "tls", "transport", "connect"]
                .iter()
                .any(|w| error.to_lowercase().contains(w)),
            "{protocol:?}: unclear error: {error}"
        );
        assert_eq!((stats.failed, stats.exported), (3, 0), "{protocol:?}");
        assert_eq!(setup.receiver.record_count(), 0);
    }
}

#[test]
#[cfg_attr(not(feature = "tls"), ignore = "needs the `tls` feature")]
fn verification_is_on_by_default_and_insecure_does_not_turn_it_off() {
    let ca = Ca::new("private CA");
    for protocol in protocols() {
        for insecure in [false, true] {
            let setup = tls_receiver(&ca, None);
            let (result, stats) = log_three(OtelLogStoreConfig {
                insecure,
                ..config(&setup, protocol)
            });
            assert!(
                result.is_err(),
                "{protocol:?} insecure={insecure}: a private CA must not verify"
            );
            assert_eq!(stats.failed, 3);
            assert_eq!(setup.receiver.record_count(), 0);
        }
    }
}

#[test]
#[cfg_attr(not(feature = "tls"), ignore = "needs the `tls` feature")]
fn mutual_tls() {
    let ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let client = client_ca.client();
    let cert_file = write_temp("client.pem", &client.cert_pem);
    let key_file = write_temp("client.key", &client.key_pem);
    for protocol in protocols() {
        let setup = tls_receiver(&ca, Some(&client_ca));
        let (result, stats) = log_three(OtelLogStoreConfig {
            certificate_file: Some(setup.ca_file.clone()),
            client_certificate_file: Some(cert_file.clone()),
            client_key_file: Some(key_file.clone()),
            ..config(&setup, protocol)
        });
        result.unwrap_or_else(|e| panic!("{protocol:?} with a client certificate: {e}"));
        assert_eq!(stats.exported, 3);

        let setup = tls_receiver(&ca, Some(&client_ca));
        let (result, stats) = log_three(OtelLogStoreConfig {
            certificate_file: Some(setup.ca_file.clone()),
            // With TLS 1.3 the server refuses a missing client certificate after the client's
            // handshake is done: the client sees either the alert (final) or, on a loaded
            // machine, the connection closing first (retryable, as an outage would be). A short
            // retry window makes both end, counted, well within `force_flush`'s bound.
            max_retry_elapsed_millis: 2_000,
            ..config(&setup, protocol)
        });
        assert!(
            result.is_err(),
            "{protocol:?}: no client certificate must be refused"
        );
        assert_eq!(stats.failed, 3);
        // The server may finish recording the failed handshake just after the client gave up.
        let deadline = std::time::Instant::now() + common::WAIT;
        while setup.receiver.tls_failures() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(setup.receiver.tls_failures() > 0, "{protocol:?}");
    }
}

#[test]
#[cfg_attr(not(feature = "tls"), ignore = "needs the `tls` feature")]
fn tls_files_are_checked_at_construction() {
    let missing = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some("https://localhost:4318".into()),
        certificate_file: Some("/nonexistent/ca.pem".into()),
        ..OtelLogStoreConfig::default()
    })
    .unwrap_err();
    assert_eq!(missing.field(), Some("certificate_file"));
    let not_pem = write_temp("not.pem", "hello");
    let error = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some("https://localhost:4318".into()),
        certificate_file: Some(not_pem),
        ..OtelLogStoreConfig::default()
    })
    .unwrap_err();
    assert_eq!(error.field(), Some("certificate_file"));
    let client = Ca::new("c").client();
    let half = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some("https://localhost:4318".into()),
        client_certificate_file: Some(write_temp("c.pem", &client.cert_pem)),
        ..OtelLogStoreConfig::default()
    })
    .unwrap_err();
    assert_eq!(half.field(), Some("client_key_file"));
    let other = Ca::new("c").client();
    let mismatched = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some("https://localhost:4318".into()),
        client_certificate_file: Some(write_temp("c.pem", &client.cert_pem)),
        client_key_file: Some(write_temp("other.key", &other.key_pem)),
        ..OtelLogStoreConfig::default()
    });
    // Over OTLP/HTTP the key is checked against the certificate at construction (a mismatch
    // would otherwise surface only at the first handshake).
    assert_eq!(
        mismatched.unwrap_err().field(),
        Some("client_certificate_file")
    );
    let not_a_key = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some("https://localhost:4318".into()),
        client_certificate_file: Some(write_temp("c.pem", &client.cert_pem)),
        client_key_file: Some(write_temp("cert-as.key", &client.cert_pem)),
        ..OtelLogStoreConfig::default()
    })
    .unwrap_err();
    assert!(not_a_key.field().is_some_and(|f| f.starts_with("client_")));
    let plaintext = ZenmlOtelLayer::new(OtelLogStoreConfig {
        endpoint: Some("http://localhost:4318".into()),
        certificate_file: Some(write_temp("ca.pem", &Ca::new("x").pem)),
        ..OtelLogStoreConfig::default()
    })
    .unwrap_err();
    assert_eq!(plaintext.field(), Some("certificate_file"));
}
