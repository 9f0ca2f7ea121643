//! Access control against real node processes: the permission matrix
//! generated from the route table, SDK keys, trusted-proxy headers, JWTs
//! and the replicated audit log across a leader kill.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pulseplane_cluster_tests::{Client, Cluster, wait_until};
use pulseplane_core::Permission;
use pulseplane_core::access::PermissionScope;
use pulseplane_node::api::auth::{Need, ROUTES};
use reqwest::Method;
use serde_json::{Value, json};

const USER_HEADER: &str = "x-test-user";

fn flag(key: &str) -> Value {
    json!({"key": key, "kind": "boolean", "default": {"variant": "on"}})
}

/// A request for a route template: path parameters filled so that a write
/// that gets past the permission check fails or changes nothing harmful
/// (unknown keys, bodies missing fields, non-empty environments).
fn request(method: &str, route: &str) -> (Method, String, Option<Value>) {
    let path = route
        .replace("{env}", "prod")
        .replace("{version}", "1")
        .replace("{name}", "nope")
        .replace("{subject}", "nobody")
        .replace("/cluster/nodes/{id}", "/cluster/nodes/99")
        .replace("/sdk-keys/{id}", "/sdk-keys/0000000000000000");
    let path = if method == "GET" {
        path.replace("{key}", "f1")
    } else {
        path.replace("{key}", "nope")
    };
    let path = if route == "/v1/audit" {
        format!("{path}?env=prod")
    } else {
        path
    };
    let body = match (method, route) {
        ("POST", "/v1/environments") => Some(json!({"key": "prod"})),
        ("POST", "/v1/environments/{env}/rollback") => Some(json!({"to_version": 999})),
        ("POST", "/v1/environments/{env}/evaluate") => {
            Some(json!({"context": {"targeting_key": "u"}}))
        }
        ("POST", "/v1/environments/{env}/sdk-keys") => Some(json!({"name": "matrix"})),
        ("PUT", "/admin/v1/settings") => Some(json!({})),
        ("GET", _) | ("DELETE", _) => None,
        _ => Some(json!({"unknown_field": true})),
    };
    (method.parse().unwrap(), path, body)
}

fn subject(p: Permission) -> String {
    format!("user-{}", p.name().replace('.', "-"))
}

/// Every endpoint against every permission: a request passes the check
/// (any answer but 401 and 403) only when its permission is granted, and
/// for environment routes only when granted in that environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_matrix() {
    let c = Cluster::start_with(
        1,
        &[
            "--trusted-proxy-header=X-Test-User",
            "--trusted-proxy-cidr=127.0.0.0/8",
            "--protect-metrics",
            "--protect-health",
        ],
    )
    .await;
    let url = c.url(1);
    let admin = &c.client;
    c.create_env(1, "prod").await;
    c.create_env(1, "other").await;
    c.put_and_publish(1, "prod", "f1", &flag("f1"))
        .await
        .unwrap();
    let (s, v) = admin
        .put(
            &url,
            "/v1/environments/prod/segments/s1",
            &json!({"key": "s1"}),
        )
        .await
        .unwrap();
    assert!(s == 201 || s == 200, "{s} {v}");

    // One role per permission, in prod (or "*" for the cluster-wide
    // ones), and the same permissions in "other" only.
    for p in Permission::ALL {
        let envs = match p.scope() {
            PermissionScope::Environment => json!(["prod"]),
            PermissionScope::Cluster => json!("*"),
        };
        let name = p.name().replace('.', "-");
        for (role, envs) in [
            (name.clone(), envs),
            (format!("{name}-other"), json!(["other"])),
        ] {
            let (s, v) = admin
                .put(
                    &url,
                    &format!("/v1/roles/{role}"),
                    &json!({"permissions": [p.name()], "environments": envs}),
                )
                .await
                .unwrap();
            assert_eq!(s, 201, "{v}");
        }
        for (sub, role) in [
            (subject(*p), name.clone()),
            (format!("{}-other", subject(*p)), format!("{name}-other")),
        ] {
            let (s, v) = admin
                .put(
                    &url,
                    &format!("/v1/bindings/{sub}"),
                    &json!({"roles": [role]}),
                )
                .await
                .unwrap();
            assert_eq!(s, 201, "{v}");
        }
    }

    let anonymous = Client::new().with_token("");
    let mut checked = 0;
    for (method, route, need) in ROUTES {
        let (m, path, body) = request(method, route);
        let full = format!("{url}{path}");
        // Nobody: 401.
        let (s, _, v) = anonymous
            .send(m.clone(), &full, &[], body.as_ref())
            .await
            .unwrap();
        assert_eq!(s, 401, "{method} {route} without a credential: {v}");
        for p in Permission::ALL {
            let granted = match need {
                Need::Known => true,
                other => other.permission() == Some(*p),
            };
            let sub = subject(*p);
            let (s, _, v) = anonymous
                .send(m.clone(), &full, &[(USER_HEADER, &sub)], body.as_ref())
                .await
                .unwrap();
            if granted {
                assert!(s != 401 && s != 403, "{method} {route} with {p}: {s} {v}");
            } else {
                assert_eq!(s, 403, "{method} {route} with {p}: {v}");
                assert_eq!(v["code"], "forbidden");
            }
            checked += 1;
        }
        // The right permission in another environment is not enough.
        let names_prod = route.contains("{env}")
            || *route == "/v1/audit"
            || (*method == "POST" && *route == "/v1/environments");
        if let Need::Env(p) | Need::Handler(p) = need
            && names_prod
            && p.scope() == PermissionScope::Environment
        {
            let sub = format!("{}-other", subject(*p));
            let (s, _, v) = anonymous
                .send(m.clone(), &full, &[(USER_HEADER, &sub)], body.as_ref())
                .await
                .unwrap();
            assert_eq!(s, 403, "{method} {route} with {p} in other: {v}");
        }
    }
    assert!(checked >= ROUTES.len() * Permission::ALL.len());

    // The environment list shows only what the caller may read.
    let reader = subject(Permission::EnvRead);
    let (s, _, v) = anonymous
        .send(
            Method::GET,
            &format!("{url}/v1/environments"),
            &[(USER_HEADER, &reader)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let keys: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["prod"]);
    // The whole audit log needs audit.read from a role for "*".
    let auditor = subject(Permission::AuditRead);
    let (s, _, _) = anonymous
        .send(
            Method::GET,
            &format!("{url}/v1/audit"),
            &[(USER_HEADER, &auditor)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 403);
    // Denials are counted locally.
    let denied = c
        .metric(
            1,
            "pulseplane_access_denied_total{permission=\"flag.publish\"}",
        )
        .await
        .unwrap_or(0.0);
    assert!(denied >= 1.0, "{denied}");
}

/// A trusted-proxy header from outside the allowed networks is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_from_an_untrusted_address_is_ignored() {
    let c = Cluster::start_with(
        1,
        &[
            "--trusted-proxy-header=X-Test-User",
            "--trusted-proxy-cidr=10.0.0.0/8",
        ],
    )
    .await;
    let url = c.url(1);
    let (s, v) = c
        .client
        .put(
            &url,
            "/v1/roles/all",
            &json!({"permissions": ["env.read"], "environments": "*"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    c.client
        .put(&url, "/v1/bindings/mallory", &json!({"roles": ["all"]}))
        .await
        .unwrap();
    let anonymous = c.client.with_token("");
    let (s, _, v) = anonymous
        .send(
            Method::GET,
            &format!("{url}/v1/whoami"),
            &[(USER_HEADER, "mallory")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 401, "{v}");
    // With a credential of its own the request is that credential's.
    let (s, _, v) = c
        .client
        .send(
            Method::GET,
            &format!("{url}/v1/whoami"),
            &[(USER_HEADER, "mallory")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(v["subject"], "admin");
    assert!(
        c.log_tail(1, 200)
            .contains("trusted-proxy header from an address outside")
    );
}

/// SDK keys read only their own environment's snapshot and export, and a
/// revocation holds on every node once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_keys_are_scoped_and_revocation_holds_on_every_node() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let url = c.url(leader);
    for env in ["prod", "dev"] {
        c.create_env(leader, env).await;
        c.put_and_publish(leader, env, "f1", &flag("f1"))
            .await
            .unwrap();
    }
    let (s, created) = c
        .client
        .post(
            &url,
            "/v1/environments/prod/sdk-keys",
            &json!({"name": "web"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ppk_"));
    let sdk = c.client.with_token(&key);
    for n in 1..=3 {
        let base = c.url(n);
        let (s, v) = wait_until(Duration::from_secs(10), "key known on every node", || {
            let sdk = sdk.clone();
            let base = base.clone();
            async move {
                let r = sdk
                    .get(&base, "/v1/sdk/environments/prod/snapshot")
                    .await
                    .ok()?;
                (r.0 == 200).then_some(r)
            }
        })
        .await;
        assert_eq!(s, 200);
        assert_eq!(v["env"], "prod", "{v}");
        assert_eq!(
            sdk.get(&base, "/v1/environments/prod/export")
                .await
                .unwrap()
                .0,
            200
        );
        // Another environment, and anything but snapshot and export: 403.
        let (s, v) = sdk
            .get(&base, "/v1/sdk/environments/dev/snapshot")
            .await
            .unwrap();
        assert_eq!(s, 403, "{v}");
        assert_eq!(
            sdk.get(&base, "/v1/environments/dev/export")
                .await
                .unwrap()
                .0,
            403
        );
        assert_eq!(
            sdk.get(&base, "/v1/environments/prod/flags")
                .await
                .unwrap()
                .0,
            403
        );
    }
    // The list shows the key but never its value or hash.
    let (_, list) = c
        .client
        .get(&url, "/v1/environments/prod/sdk-keys")
        .await
        .unwrap();
    let text = list.to_string();
    assert!(text.contains(&id));
    assert!(
        !text.contains(&key[20..]) && !text.contains("hash"),
        "{text}"
    );

    let (s, v) = c
        .client
        .delete(&url, &format!("/v1/environments/prod/sdk-keys/{id}"))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    for n in 1..=3 {
        let base = c.url(n);
        wait_until(Duration::from_secs(10), "revocation on every node", || {
            let sdk = sdk.clone();
            let base = base.clone();
            async move {
                let (s, v) = sdk
                    .get(&base, "/v1/sdk/environments/prod/snapshot")
                    .await
                    .ok()?;
                (s == 401 && v["message"].as_str()?.contains("revoked")).then_some(())
            }
        })
        .await;
    }
    // A forged key with the same id is refused too.
    let forged = format!("ppk_{id}_{}", "0".repeat(64));
    let (s, _) = c
        .client
        .with_token(&forged)
        .get(&url, "/v1/sdk/environments/prod/snapshot")
        .await
        .unwrap();
    assert_eq!(s, 401);
}

const HS_SECRET: &str = "cluster-tests-jwt-secret-0123456789abcdef";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn jwt(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

/// JWT users get what their groups' roles grant, on every node as soon as
/// the binding commits; every write is in the audit log of every node,
/// with subject, permission and request id, and stays there after the
/// leader is killed; a rejected token is counted and logged without the
/// token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_users_and_the_audit_log_across_a_leader_kill() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt-secret");
    std::fs::write(&secret_file, HS_SECRET).unwrap();
    let flag_arg = format!("--jwt-hs256-secret-file={}", secret_file.display());
    let mut c = Cluster::start_with(
        3,
        &[
            &flag_arg,
            "--jwt-issuer=https://idp.test",
            "--jwt-audience=pulseplane",
        ],
    )
    .await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let url = c.url(leader);
    c.create_env(leader, "prod").await;
    let claims = json!({"sub": "carol", "exp": now() + 600, "iss": "https://idp.test",
                        "aud": "pulseplane", "groups": ["editors"]});
    let carol = c.client.with_token(&jwt(&claims));
    // Known but not allowed: 403.
    let (s, v) = carol
        .put(&url, "/v1/environments/prod/flags/f1", &flag("f1"))
        .await
        .unwrap();
    assert_eq!(s, 403, "{v}");
    let (s, v) = c
        .client
        .put(
            &url,
            "/v1/roles/editor",
            &json!({"permissions": ["flag.read", "flag.write", "flag.publish"],
                    "environments": ["prod"]}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    let (s, v) = c
        .client
        .put(
            &url,
            "/v1/bindings/group:editors",
            &json!({"roles": ["editor"]}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    // The binding holds on a follower once committed there.
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let furl = c.url(follower);
    wait_until(Duration::from_secs(10), "binding on a follower", || {
        let carol = carol.clone();
        let furl = furl.clone();
        async move {
            let (s, _) = carol.get(&furl, "/v1/environments/prod/flags").await.ok()?;
            (s == 200).then_some(())
        }
    })
    .await;
    let (s, _, v) = carol
        .send(
            Method::PUT,
            &format!("{furl}/v1/environments/prod/flags/f1"),
            &[("x-request-id", "req-carol-put")],
            Some(&flag("f1")),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    let (s, _, v) = carol
        .send(
            Method::POST,
            &format!("{furl}/v1/environments/prod/publish"),
            &[("x-request-id", "req-carol-publish")],
            Some(&json!({})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    // Not granted: kill.
    let (s, _) = carol
        .post(&furl, "/v1/environments/prod/flags/f1/kill", &json!({}))
        .await
        .unwrap();
    assert_eq!(s, 403);

    // Rejected tokens: 401 with the reason counted, the token not logged.
    let expired = jwt(
        &json!({"sub": "carol", "exp": now() - 3600, "iss": "https://idp.test",
                              "aud": "pulseplane"}),
    );
    let (s, h, v) = c
        .client
        .with_token(&expired)
        .send(Method::GET, &format!("{url}/v1/whoami"), &[], None)
        .await
        .unwrap();
    assert_eq!(s, 401, "{v}");
    assert_eq!(h["www-authenticate"], "Bearer");
    assert!(v["message"].as_str().unwrap().contains("expired"));
    let forged = jwt(
        &json!({"sub": "carol", "exp": now() + 600, "iss": "https://evil.test",
                             "aud": "pulseplane"}),
    );
    let (s, _, _) = c
        .client
        .with_token(&forged)
        .send(Method::GET, &format!("{url}/v1/whoami"), &[], None)
        .await
        .unwrap();
    assert_eq!(s, 401);
    assert_eq!(
        c.metric(leader, "pulseplane_auth_failures_total{reason=\"expired\"}")
            .await,
        Some(1.0)
    );
    let log = c.log_tail(leader, 400);
    assert!(log.contains("request not authenticated"));
    assert!(!log.contains(&expired) && !log.contains(&expired[expired.len() - 20..]));

    // Every node holds the same audit entries; kill the leader and read
    // them from the survivors.
    let urls: Vec<String> = (1..=3).map(|n| c.url(n)).collect();
    let client = c.client.clone();
    let audit_of = |n: u64| {
        let client = client.clone();
        let base = urls[n as usize - 1].clone();
        async move {
            // Right after a leader change a node may not know the new
            // leader yet: a linearizable read answers 503 (retry) until it
            // does.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let (s, v) = client
                    .get(&base, "/v1/audit?env=prod&consistency=linearizable")
                    .await
                    .unwrap();
                if s == 503 && std::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                assert_eq!(s, 200, "{v}");
                return v["items"].as_array().unwrap().clone();
            }
        }
    };
    let before = audit_of(leader).await;
    let put = before
        .iter()
        .find(|e| e["request_id"] == "req-carol-put")
        .unwrap_or_else(|| panic!("{before:?}"));
    assert_eq!(put["subject"], "carol");
    assert_eq!(put["permission"], "flag.write");
    assert_eq!(put["action"], "upsert_flag");
    assert_eq!(put["target"], "flag:f1");
    assert_eq!(put["outcome"], "ok");
    assert!(put["before"].is_null() && put["after"].is_string());
    let publish = before
        .iter()
        .find(|e| e["request_id"] == "req-carol-publish")
        .unwrap();
    assert_eq!(publish["permission"], "flag.publish");
    assert_eq!(publish["env_version"], 1);
    // Denied attempts never reach the replicated log.
    assert!(before.iter().all(|e| e["action"] != "kill"));
    c.kill9(leader);
    let survivors: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    c.leader(Duration::from_secs(15)).await;
    for n in survivors {
        let after = audit_of(n).await;
        assert_eq!(after, before, "node {n}");
    }
    // The subject filter and the cluster-wide view.
    let (_, v) = c
        .client
        .get(&furl, "/v1/audit?subject=carol")
        .await
        .unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{v}");
    let (_, v) = c.client.get(&furl, "/v1/audit?limit=2").await.unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let cursor = v["next_cursor"].as_u64().unwrap();
    let (_, next) = c
        .client
        .get(&furl, &format!("/v1/audit?limit=2&cursor={cursor}"))
        .await
        .unwrap();
    assert!(next["items"][0]["seq"].as_u64().unwrap() > cursor);
}
