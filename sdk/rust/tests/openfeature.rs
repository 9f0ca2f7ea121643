//! The OpenFeature provider, through OpenFeature's own client API: values,
//! variants, reasons (STALE included), error codes and flag metadata.
#![cfg(feature = "openfeature")]

use open_feature::provider::{FeatureProvider, ProviderStatus};
use open_feature::{EvaluationContext, EvaluationErrorCode, EvaluationReason, OpenFeature};
use pulseplane_core::Flag;
use pulseplane_sdk::openfeature::PulseplaneProvider;
use pulseplane_sdk::{Client, Snapshot};
use serde_json::json;

fn flag(v: serde_json::Value) -> Flag {
    let mut f: Flag = serde_json::from_value(v).unwrap();
    f.normalize();
    f
}

/// A bootstrap file with a targeted boolean, a config string and a JSON
/// config.
fn bootstrap(dir: &std::path::Path) -> std::path::PathBuf {
    let flags = vec![
        flag(json!({
            "key": "new-checkout", "kind": "boolean", "version": 4,
            "rules": [{"clauses": [{"attribute": "country", "operator": "in", "values": ["NL"]}],
                       "serve": {"variant": "on"}}],
            "default": {"variant": "off"}
        })),
        flag(json!({
            "key": "banner", "kind": "config", "type": "string", "version": 2,
            "variants": [{"key": "v1", "value": "hello"}],
            "default": {"variant": "v1"}, "off_variant": "v1"
        })),
        flag(json!({
            "key": "limits", "kind": "config", "type": "json", "version": 1,
            "variants": [{"key": "v1", "value": {"rps": 50, "burst": 1.5, "name": "std", "tags": ["a"]}}],
            "default": {"variant": "v1"}, "off_variant": "v1"
        })),
    ];
    let path = dir.join("bootstrap.json");
    std::fs::write(
        &path,
        Snapshot::new("prod", 9, Some(0), flags, vec![]).to_json(),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn the_provider_answers_through_the_openfeature_client() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::builder("prod")
        .bootstrap_file(bootstrap(dir.path()))
        .start()
        .await
        .unwrap();
    let provider = PulseplaneProvider::new(client);
    // Bootstrap data is served, but not fresh from a node.
    assert_eq!(provider.status(), ProviderStatus::STALE);
    assert_eq!(provider.metadata().name, "pulseplane");

    let mut api = OpenFeature::default();
    api.set_provider(provider).await;
    let of = api.create_client();
    let nl = EvaluationContext::default()
        .with_targeting_key("user-1")
        .with_custom_field("country", "NL");
    let de = EvaluationContext::default()
        .with_targeting_key("user-2")
        .with_custom_field("country", "DE");

    let d = of
        .get_bool_details("new-checkout", Some(&nl), None)
        .await
        .unwrap();
    assert!(d.value);
    assert_eq!(d.variant.as_deref(), Some("on"));
    assert_eq!(d.reason, Some(EvaluationReason::Other("STALE".into())));
    let meta = &d.flag_metadata.values;
    assert_eq!(meta.get("env_version"), Some(&9i64.into()));
    assert_eq!(meta.get("flag_version"), Some(&4i64.into()));
    assert_eq!(
        meta.get("resolved_reason"),
        Some(&"TargetingMatch".to_owned().into())
    );
    assert!(
        !of.get_bool_value("new-checkout", Some(&de), None)
            .await
            .unwrap()
    );

    assert_eq!(
        of.get_string_value("banner", Some(&de), None)
            .await
            .unwrap(),
        "hello"
    );
    let limits = of
        .get_struct_value::<open_feature::StructValue>("limits", Some(&de), None)
        .await
        .unwrap();
    assert_eq!(
        limits.fields.get("rps"),
        Some(&open_feature::Value::Int(50))
    );
    assert_eq!(
        limits.fields.get("burst"),
        Some(&open_feature::Value::Float(1.5))
    );

    // Errors carry OpenFeature's codes; the value is the caller's default.
    let e = of
        .get_bool_details("missing", Some(&de), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::FlagNotFound);
    let e = of
        .get_int_details("banner", Some(&de), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::TypeMismatch);
    let e = of
        .get_struct_value::<open_feature::StructValue>("banner", Some(&de), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::TypeMismatch);
}

#[tokio::test]
async fn with_nothing_loaded_the_provider_is_not_ready() {
    let client = Client::builder("prod").start().await.unwrap();
    let provider = PulseplaneProvider::new(client);
    assert_eq!(provider.status(), ProviderStatus::NotReady);
    let mut api = OpenFeature::default();
    api.set_provider(provider).await;
    let of = api.create_client();
    let e = of
        .get_bool_details("anything", Some(&EvaluationContext::default()), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::ProviderNotReady);
}
