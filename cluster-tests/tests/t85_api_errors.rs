//! Bad input to the control-plane API on a real node.
//!
//! Invariant: every bad request gets a 4xx with a stable code and the field
//! named, never a 5xx, and writes nothing; preview evaluation is
//! rate-limited with 429 and `Retry-After`; `/openapi.json` is served
//! openly and equals docs/openapi.json.

use pulseplane_cluster_tests::Cluster;
use reqwest::Method;
use serde_json::{Value, json};

fn paths(v: &Value) -> Vec<&str> {
    v["details"]
        .as_array()
        .map(|d| d.iter().filter_map(|d| d["path"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let c = Cluster::start_with(1, &["--evaluate-rate", "1"]).await;
    let u = c.url(1);
    c.create_env(1, "prod").await;
    let send = |m: Method, path: &str, headers: &[(&str, &str)], body: Option<Value>| {
        let url = format!("{u}{path}");
        let client = c.client.clone();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            client.send(m, &url, &h, body.as_ref()).await.unwrap()
        }
    };

    // Unknown fields, at any depth, are named; nothing is written.
    let (s, _, v) = send(
        Method::PUT,
        "/v1/environments/prod/flags/a",
        &[],
        Some(json!({"kind": "boolean", "colour": 1,
                    "rules": [{"serve": {"variant": "on"}, "clauses": [], "zzz": 2}]})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["code"], "invalid");
    assert_eq!(paths(&v), ["/colour", "/rules/0/zzz"]);
    let (s, _, v) = send(Method::GET, "/v1/environments/prod/flags/a", &[], None).await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["code"], "flag_not_found");
    let (s, _, v) = send(
        Method::PUT,
        "/v1/environments/prod/segments/s",
        &[],
        Some(json!({"included": ["u1"], "extra": true})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(paths(&v), ["/extra"]);
    let (s, _, v) = send(
        Method::POST,
        "/v1/environments/prod/publish",
        &[],
        Some(json!({"mesage": "typo"})),
    )
    .await;
    assert_eq!(s, 422, "{v}");

    // Malformed JSON, a bad If-Match, a bad query.
    let (s, _, v) = send(
        Method::PUT,
        "/v1/environments/prod/flags/a",
        &[("if-match", "nope")],
        Some(json!({"kind": "boolean"})),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("invalid_header")),
        "{v}"
    );
    let url = format!("{u}/v1/environments/prod/flags/a");
    let r = reqwest::Client::new()
        .put(&url)
        .bearer_auth(pulseplane_cluster_tests::TOKEN)
        .body("{\"kind\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for (path, status, field) in [
        ("/v1/sdk/environments/prod/snapshot?wait=soon", 422, "/wait"),
        ("/v1/environments/prod/flags/a?diff=yesterday", 422, "/diff"),
        ("/v1/environments/prod/versions?cursor=abc", 422, "/cursor"),
        ("/v1/environments/prod/versions?limit=0", 422, "/limit"),
        (
            "/v1/sdk/environments/prod/snapshot?min_version=abc",
            422,
            "/min_version",
        ),
        (
            "/v1/environments/prod/versions/1?diff_from=-1",
            422,
            "/diff_from",
        ),
    ] {
        let (s, _, v) = send(Method::GET, path, &[], None).await;
        assert_eq!(s, status, "{path}: {v}");
        assert_eq!(paths(&v), [field], "{path}: {v}");
    }
    let (s, _, v) = send(
        Method::GET,
        "/v1/sdk/environments/prod/snapshot?colour=red",
        &[],
        None,
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("colour"), "{v}");
    let (s, _, v) = send(
        Method::GET,
        "/v1/environments/prod/versions/latest",
        &[],
        None,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["code"].is_string(), "{v}");
    let (s, _, v) = send(
        Method::GET,
        "/v1/sdk/environments/prod/snapshot",
        &[("x-pulseplane-have-version", "new")],
        None,
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("invalid_header")),
        "{v}"
    );

    // Things that do not exist.
    for (path, code) in [
        ("/v1/environments/prod/versions/9", "version_not_found"),
        ("/v1/environments/prod/segments/s", "segment_not_found"),
        ("/v1/environments/nope/versions", "environment_not_found"),
        (
            "/v1/sdk/environments/nope/snapshot",
            "environment_not_found",
        ),
        ("/v1/environments/nope/export", "environment_not_found"),
    ] {
        let (s, _, v) = send(Method::GET, path, &[], None).await;
        assert_eq!((s, v["code"].as_str()), (404, Some(code)), "{path}: {v}");
    }
    let (s, _, v) = send(
        Method::POST,
        "/v1/environments/prod/rollback",
        &[],
        Some(json!({"to_version": 5})),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (404, Some("version_not_found")),
        "{v}"
    );

    // Settings out of range.
    let (s, _, v) = send(
        Method::PUT,
        "/admin/v1/settings",
        &[],
        Some(json!({"version_retention": 0, "idempotency_window_ms": 1})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(paths(&v), ["/idempotency_window_ms", "/version_retention"]);
    let (s, _, v) = send(Method::GET, "/admin/v1/settings", &[], None).await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"idempotency_window_ms": 86_400_000, "version_retention": 1000,
               "audit_retention_entries": 10_000, "audit_retention_ms": 7_776_000_000_i64})
    );

    // Preview evaluation: a bad context is 422; past the rate, 429.
    let (s, _, v) = send(
        Method::POST,
        "/v1/environments/prod/evaluate",
        &[],
        Some(json!({"context": 5})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let mut limited = None;
    for _ in 0..10 {
        let (s, h, v) = send(
            Method::POST,
            "/v1/environments/prod/evaluate",
            &[],
            Some(json!({"draft": true})),
        )
        .await;
        if s == 429 {
            limited = Some((h, v));
            break;
        }
        assert_eq!(s, 200, "{v}");
    }
    let (h, v) = limited.expect("no 429 after 10 evaluations at 1 per second");
    assert_eq!(v["code"], "rate_limited");
    assert!(h.contains_key("retry-after"));

    // The OpenAPI document is served without a token and is the docs copy.
    let r = reqwest::get(format!("{u}/openapi.json")).await.unwrap();
    assert_eq!(r.status(), 200);
    let served: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let docs = std::fs::read_to_string(format!("{dir}/../docs/openapi.json")).unwrap();
    assert_eq!(served, serde_json::from_str::<Value>(&docs).unwrap());
}
