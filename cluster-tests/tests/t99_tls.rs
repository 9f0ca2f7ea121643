//! TLS: a cluster whose nodes serve the API and the peer transport over
//! TLS only, with a self-signed certificate the test makes. The nodes elect
//! a leader and replicate over TLS, clients reach them with the
//! certificate, and plain HTTP gets no answer.

use std::time::Duration;

use pulseplane_cluster_tests::Cluster;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_replicates_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_file = dir.path().join("node.crt");
    let key_file = dir.path().join("node.key");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let flags = [
        format!("--tls-cert-file={}", cert_file.display()),
        format!("--tls-key-file={}", key_file.display()),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut c = Cluster::start_tls(3, &flags, cert.pem().as_bytes()).await;

    let leader = c.leader(Duration::from_secs(15)).await;
    c.create_env(leader, "prod").await;
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    // A write through a follower is forwarded to the leader over TLS.
    let version = c
        .put_and_publish(
            follower,
            "prod",
            "f1",
            &json!({"key": "f1", "kind": "boolean", "default": {"variant": "on"}}),
        )
        .await
        .unwrap();
    assert_eq!(version, 1);
    c.converged(&[1, 2, 3], Duration::from_secs(15)).await;
    for n in 1..=3 {
        assert!(c.url(n).starts_with("https://"));
        let (s, v) = c
            .client
            .get(&c.url(n), "/v1/sdk/environments/prod/snapshot")
            .await
            .unwrap();
        assert_eq!(s, 200, "{v}");
    }

    // The SDK polls over TLS with an SDK key, trusting the certificate.
    let (s, key) = c
        .client
        .post(&c.url(leader), "/v1/environments/prod/sdk-keys", &json!({}))
        .await
        .unwrap();
    assert_eq!(s, 201, "{key}");
    let sdk = pulseplane_sdk::Client::builder("prod")
        .endpoints((1..=3).map(|n| c.url(n)))
        .sdk_key(key["key"].as_str().unwrap())
        .tls_ca_pem(cert.pem().as_bytes())
        .start()
        .await
        .unwrap();
    assert!(sdk.wait_ready(Duration::from_secs(10)).await);
    assert_eq!(sdk.version(), 1);
    assert!(sdk.bool_value("f1", &pulseplane_core::Context::new("u1"), false));

    // Plain HTTP to a TLS node: no HTTP answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let r = plain
        .get(format!("http://{}/healthz", c.addr(leader)))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
    // A client that does not trust the certificate is refused.
    let untrusting = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let r = untrusting
        .get(format!("https://{}/healthz", c.addr(leader)))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");

    // The cluster survives losing its leader over TLS.
    c.kill9(leader);
    let next = c.leader(Duration::from_secs(15)).await;
    assert_ne!(next, leader);
    let version = c
        .put_and_publish(next, "prod", "f2", &json!({"key": "f2", "kind": "boolean"}))
        .await
        .unwrap();
    assert_eq!(version, 2);
}
