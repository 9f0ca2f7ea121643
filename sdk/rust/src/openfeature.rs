//! An OpenFeature provider over a [`Client`] (feature `openfeature`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), pulseplane_sdk::ConfigError> {
//! use open_feature::{EvaluationContext, OpenFeature};
//! use pulseplane_sdk::Client;
//! use pulseplane_sdk::openfeature::PulseplaneProvider;
//!
//! let client = Client::builder("prod").endpoints(["http://10.0.0.1:7401"]).start().await?;
//! let mut api = OpenFeature::singleton_mut().await;
//! api.set_provider(PulseplaneProvider::new(client)).await;
//! let flags = api.create_client();
//! let ctx = EvaluationContext::default().with_targeting_key("user-42");
//! let on = flags.get_bool_value("new-checkout", Some(&ctx), None).await.unwrap_or(false);
//! # let _ = on; Ok(()) }
//! ```
//!
//! Evaluation is the client's: local, synchronous, with the same core as
//! the nodes. Reasons map to OpenFeature's names (`STATIC`,
//! `TARGETING_MATCH`, `SPLIT`, `DISABLED`, `DEFAULT`, `ERROR`), with
//! `STALE` and `PREREQUISITE_FAILED` as OpenFeature's custom reasons. An
//! evaluation that falls back to the caller's default is returned as an
//! OpenFeature error with the mapped code (`FLAG_NOT_FOUND`,
//! `TYPE_MISMATCH`, `PROVIDER_NOT_READY`, `TARGETING_KEY_MISSING`,
//! `GENERAL`), so the OpenFeature client serves the caller's default. The
//! flag metadata carries `env_version` and `flag_version`.

use std::collections::HashMap;

use async_trait::async_trait;
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, EvaluationResult, FlagMetadata, StructValue,
};
use pulseplane_core::context::AttrValue;
use serde_json::Value as Json;

use crate::{Client, Context, Details, ErrorCode, Reason, Status};

/// The provider's name in OpenFeature's metadata.
pub const PROVIDER_NAME: &str = "pulseplane";

/// An OpenFeature `FeatureProvider` that evaluates with a [`Client`].
pub struct PulseplaneProvider {
    client: Client,
    metadata: ProviderMetadata,
}

impl PulseplaneProvider {
    pub fn new(client: Client) -> PulseplaneProvider {
        PulseplaneProvider {
            client,
            metadata: ProviderMetadata::new(PROVIDER_NAME),
        }
    }

    /// The client the provider evaluates with.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// OpenFeature's reason for ours.
pub fn reason(r: Reason) -> EvaluationReason {
    match r {
        Reason::Static => EvaluationReason::Static,
        Reason::TargetingMatch => EvaluationReason::TargetingMatch,
        Reason::Split => EvaluationReason::Split,
        Reason::Disabled => EvaluationReason::Disabled,
        Reason::Default => EvaluationReason::Default,
        Reason::Error => EvaluationReason::Error,
        Reason::Stale => EvaluationReason::Other("STALE".into()),
        Reason::PrerequisiteFailed => EvaluationReason::Other("PREREQUISITE_FAILED".into()),
    }
}

/// OpenFeature's error code for ours.
pub fn error_code(e: ErrorCode) -> EvaluationErrorCode {
    match e {
        ErrorCode::ProviderNotReady => EvaluationErrorCode::ProviderNotReady,
        ErrorCode::FlagNotFound => EvaluationErrorCode::FlagNotFound,
        ErrorCode::TypeMismatch => EvaluationErrorCode::TypeMismatch,
        ErrorCode::TargetingKeyMissing => EvaluationErrorCode::TargetingKeyMissing,
        ErrorCode::General => EvaluationErrorCode::General("GENERAL".into()),
    }
}

/// Our context for OpenFeature's: the targeting key and the scalar fields
/// (date-times as RFC 3339 text, for the `before`/`after` operators);
/// opaque struct fields are left out.
pub fn context(ec: &EvaluationContext) -> Context {
    let mut ctx = match &ec.targeting_key {
        Some(key) => Context::new(key),
        None => Context::default(),
    };
    for (name, value) in &ec.custom_fields {
        match value {
            EvaluationContextFieldValue::Bool(b) => ctx.set(name, AttrValue::Bool(*b)),
            EvaluationContextFieldValue::Int(i) => ctx.set(name, AttrValue::from(*i)),
            EvaluationContextFieldValue::Float(f) => ctx.set(name, AttrValue::Number(*f)),
            EvaluationContextFieldValue::String(s) => ctx.set_str(name, s),
            EvaluationContextFieldValue::DateTime(t) => {
                if let Ok(text) = t.format(&time::format_description::well_known::Rfc3339) {
                    ctx.set_str(name, &text);
                }
            }
            EvaluationContextFieldValue::Struct(_) => {}
        }
    }
    ctx
}

/// Our details as OpenFeature's resolution, or its error when the
/// caller's default is due.
fn resolution<T, U>(
    d: Details<T>,
    convert: impl FnOnce(T) -> Option<U>,
) -> EvaluationResult<ResolutionDetails<U>> {
    if let Some(code) = d.error_code {
        return Err(EvaluationError {
            code: error_code(code),
            message: Some(format!("{code:?}; the caller's default is served")),
        });
    }
    let Some(value) = convert(d.value) else {
        return Err(EvaluationError {
            code: EvaluationErrorCode::TypeMismatch,
            message: Some("the flag's value is not a JSON object".into()),
        });
    };
    let mut metadata = FlagMetadata::default()
        .with_value(
            "env_version",
            i64::try_from(d.env_version).unwrap_or(i64::MAX),
        )
        .with_value(
            "flag_version",
            i64::try_from(d.flag_version).unwrap_or(i64::MAX),
        );
    if d.reason == Reason::Stale {
        metadata = metadata.with_value("resolved_reason", format!("{:?}", d.resolved_reason));
    }
    Ok(ResolutionDetails {
        value,
        variant: d.variant,
        reason: Some(reason(d.reason)),
        flag_metadata: Some(metadata),
    })
}

/// A JSON value as OpenFeature's; `None` for null.
fn to_value(v: Json) -> Option<open_feature::Value> {
    Some(match v {
        Json::Null => return None,
        Json::Bool(b) => open_feature::Value::Bool(b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => open_feature::Value::Int(i),
            None => open_feature::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => open_feature::Value::String(s),
        Json::Array(items) => {
            open_feature::Value::Array(items.into_iter().filter_map(to_value).collect())
        }
        Json::Object(map) => open_feature::Value::Struct(to_struct(map)),
    })
}

fn to_struct(map: serde_json::Map<String, Json>) -> StructValue {
    let fields: HashMap<String, open_feature::Value> = map
        .into_iter()
        .filter_map(|(k, v)| to_value(v).map(|v| (k, v)))
        .collect();
    StructValue { fields }
}

#[async_trait]
impl FeatureProvider for PulseplaneProvider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    /// READY on fresh data from a node; STALE on stale, cached or bootstrap
    /// data; NOT_READY with nothing but the caller's defaults.
    fn status(&self) -> ProviderStatus {
        match self.client.status() {
            Status::Ready => ProviderStatus::Ready,
            Status::Stale | Status::FromCache | Status::FromBootstrap => ProviderStatus::STALE,
            Status::DefaultsOnly => ProviderStatus::NotReady,
        }
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        ec: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        resolution(
            self.client.bool_details(flag_key, &context(ec), false),
            Some,
        )
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        ec: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        resolution(self.client.int_details(flag_key, &context(ec), 0), Some)
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        ec: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        resolution(self.client.float_details(flag_key, &context(ec), 0.0), Some)
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        ec: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        resolution(self.client.string_details(flag_key, &context(ec), ""), Some)
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        ec: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        resolution(
            self.client.json_details(flag_key, &context(ec), Json::Null),
            |v| match v {
                Json::Object(map) => Some(to_struct(map)),
                _ => None,
            },
        )
    }
}
