//! The OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types' schemas; served at `/openapi.json` and
//! kept in docs/openapi.json (a test fails when that copy is stale; run it
//! with `PULSEPLANE_UPDATE_OPENAPI=1` to rewrite it).

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{
    admin, audit, environments, flags, health, publish, roles, sdk, sdk_keys, segments, versions,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulseplane",
        description = "Feature-flag and runtime-configuration control plane. Writes are committed on a Raft quorum; reads come from the answering node. See docs/api.md.",
        license(name = "MIT")
    ),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        environments::create,
        environments::list,
        environments::read,
        environments::remove,
        flags::list,
        flags::read,
        flags::upsert,
        flags::remove,
        segments::list,
        segments::read,
        segments::upsert,
        segments::remove,
        publish::publish,
        publish::rollback,
        publish::kill,
        publish::restore,
        versions::list,
        versions::read,
        sdk::snapshot,
        sdk::export,
        sdk::fleet,
        sdk::sdk_status,
        sdk::evaluate,
        admin::cluster,
        admin::this_node,
        admin::snapshot,
        admin::backup,
        admin::add_node,
        admin::remove_node,
        admin::settings,
        admin::configure,
        roles::whoami,
        roles::permissions,
        roles::list_roles,
        roles::read_role,
        roles::put_role,
        roles::delete_role,
        roles::list_bindings,
        roles::read_binding,
        roles::put_binding,
        roles::delete_binding,
        sdk_keys::list,
        sdk_keys::create,
        sdk_keys::revoke,
        audit::list,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

/// Adds the bearer-token scheme every endpoint but the health checks uses.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON (built once).
pub fn document() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_copy_is_current() {
        // `cargo test` sets the variable at run time too; the binary may run
        // from another checkout that shares the target dir.
        let dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
        let path = format!("{dir}/../docs/openapi.json");
        let path = path.as_str();
        let doc = format!("{}\n", document());
        let parsed: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(
            parsed["openapi"].as_str().map(|v| v.starts_with("3.")),
            Some(true)
        );
        assert!(parsed["paths"]["/v1/sdk/environments/{env}/snapshot"]["get"].is_object());
        // Every documented operation has a permission, and every route in
        // the permission table is documented.
        let mut documented = Vec::new();
        for (path, ops) in parsed["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        for (method, path) in &documented {
            let m: axum::http::Method = method.parse().unwrap();
            assert!(
                crate::api::auth::need(&m, path).is_some(),
                "{method} {path} has no permission in api::auth::ROUTES"
            );
        }
        for (method, path, _) in crate::api::auth::ROUTES {
            assert!(
                documented.iter().any(|(m, p)| m == method && p == path),
                "{method} {path} is in ROUTES but not documented"
            );
        }
        if std::env::var_os("PULSEPLANE_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &doc).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == doc,
            "docs/openapi.json is stale: run PULSEPLANE_UPDATE_OPENAPI=1 cargo test -p pulseplane-node --lib openapi"
        );
    }
}
