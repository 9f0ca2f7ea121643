//! TLS: a cluster whose nodes serve the API and the peer transport over
//! TLS only, with a self-signed certificate the test makes. The nodes elect
//! a leader and replicate over TLS, clients reach them with the
//! certificate, and plain HTTP gets no answer. The `pulseplane` CLI speaks
//! TLS with `--ca-file` (and refuses https:// without it); the console's
//! cookies are `Secure`.

use std::process::{Command, Output};
use std::time::Duration;

use pulseplane_cluster_tests::{Cluster, TOKEN, node_binary};
use serde_json::json;

/// Runs the CLI against `endpoint` with the admin token.
fn cli(endpoint: &str, args: &[&str]) -> Output {
    Command::new(node_binary().with_file_name("pulseplane"))
        .arg(format!("--endpoint={endpoint}"))
        .args(args)
        .env("PULSEPLANE_TOKEN", TOKEN)
        .env_remove("PULSEPLANE_TOKEN_FILE")
        .env_remove("PULSEPLANE_CA_FILE")
        .output()
        .expect("run pulseplane")
}

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

    // The CLI over TLS, trusting the CA with --ca-file: status, and an
    // export from a list whose first node is down.
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, cert.pem()).unwrap();
    let ca_arg = format!("--ca-file={}", ca_file.display());
    let all = (1..=3).map(|n| c.url(n)).collect::<Vec<_>>().join(",");
    let out = cli(&all, &[&ca_arg, "cluster", "status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["members"].as_array().unwrap().len(), 3, "{status}");
    let export_file = dir.path().join("prod.json");
    let down = format!(
        "https://127.0.0.1:{}",
        pulseplane_cluster_tests::free_port()
    );
    let out = cli(
        &format!("{down},{}", c.url(follower)),
        &[
            &ca_arg,
            "export",
            "--env",
            "prod",
            "--out",
            export_file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&export_file).unwrap()).unwrap();
    assert_eq!(exported["env"], "prod");
    // https:// without --ca-file: a usage error (2); a CA that did not sign
    // the nodes' certificates: refused by TLS (1).
    let out = cli(&c.url(leader), &["cluster", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca-file"));
    let other_key = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&other_key)
        .unwrap();
    let wrong_ca = dir.path().join("wrong-ca.pem");
    std::fs::write(&wrong_ca, other.pem()).unwrap();
    let out = cli(
        &c.url(leader),
        &[
            &format!("--ca-file={}", wrong_ca.display()),
            "cluster",
            "status",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The console over TLS: its cookies are Secure.
    let (s, headers, _) = c
        .client
        .send(
            reqwest::Method::GET,
            &format!("{}/console/sign-in", c.url(leader)),
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        cookie.starts_with("pp_csrf=")
            && cookie.contains("; Secure")
            && cookie.contains("HttpOnly"),
        "{cookie}"
    );

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
