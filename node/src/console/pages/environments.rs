//! The environments list, with each one's version, last publish and fleet.

use std::fmt::Write;

use axum::extract::RawQuery;
use axum::http::Method;
use pulseplane_core::Permission;
use serde_json::{Value, json};

use super::super::html::{self, Section, csrf_field, esc, when};
use super::super::{Ctx, Form, enc};
use super::*;

/// A one-line fleet summary: `3 of 4 instances on version 7`.
pub(super) fn fleet_line(status: &Value) -> String {
    let instances = status["instances"].as_u64().unwrap_or(0);
    let converged = status["converged"].as_u64().unwrap_or(0);
    let version = status["version"].as_u64().unwrap_or(0);
    let mut line = format!("{converged} of {instances} SDK instances on version {version}");
    if let Some(down) = status["nodes_unreachable"]
        .as_array()
        .filter(|a| !a.is_empty())
    {
        let _ = write!(line, " ({} nodes not answering)", down.len());
    }
    line
}

pub(crate) async fn environments(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    let me = me(&ctx).await?;
    let q = query_fields(q.as_deref());
    let envs = all_items(&ctx, "/v1/environments").await?;
    let mut fleets = tokio::task::JoinSet::new();
    for (i, e) in envs.iter().enumerate() {
        let key = s(&e["key"]);
        let ctx = ctx.clone();
        fleets.spawn(async move {
            let status = ctx
                .get(&format!(
                    "/v1/environments/{}/sdk-status?limit=1",
                    enc(&key)
                ))
                .await;
            (i, status)
        });
    }
    let mut fleet = vec![None; envs.len()];
    while let Some(Ok((i, status))) = fleets.join_next().await {
        fleet[i] = Some(status);
    }
    let mut body = String::from("<h1>Environments</h1>");
    body.push_str(&html::notice(&match field(&q, "did") {
        "created" => format!("Created environment {}.", field(&q, "env")),
        _ => String::new(),
    }));
    body.push_str(
        "<table class=\"list\"><thead><tr><th scope=\"col\">Environment</th><th scope=\"col\">Name</th>\
         <th scope=\"col\">Version</th><th scope=\"col\">Flags</th><th scope=\"col\">Last publish</th>\
         <th scope=\"col\">Fleet</th></tr></thead><tbody>",
    );
    for (e, f) in envs.iter().zip(&fleet) {
        let key = s(&e["key"]);
        let published = match (e["published_by"].as_str(), e["published_at_ms"].as_i64()) {
            (Some(by), Some(at)) => {
                format!("{} <span class=\"muted\">{}</span>", esc(by), when(at))
            }
            _ => "<span class=\"muted\">never</span>".to_owned(),
        };
        let fleet_cell = match f {
            Some(Ok(status)) => {
                let instances = status["instances"].as_u64().unwrap_or(0);
                let converged = status["converged"].as_u64().unwrap_or(0);
                format!(
                    "<meter min=\"0\" max=\"{}\" value=\"{converged}\" aria-hidden=\"true\"></meter> {}",
                    instances.max(1),
                    esc(&fleet_line(status))
                )
            }
            Some(Err(f)) => format!("<span class=\"muted\">{}</span>", esc(&f.message)),
            None => String::new(),
        };
        let _ = write!(
            body,
            "<tr><td><a href=\"/console/env/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{published}</td><td>{fleet_cell}</td></tr>",
            enc(&key),
            esc(&key),
            esc(&s(&e["name"])),
            s(&e["version"]),
            s(&e["flags"]),
        );
    }
    if envs.is_empty() {
        body.push_str(
            "<tr><td colspan=\"6\" class=\"muted\">No environments you may read.</td></tr>",
        );
    }
    body.push_str("</tbody></table>");
    if me.can(Permission::EnvCreate, None) {
        let _ = write!(
            body,
            "<h2>New environment</h2><form method=\"post\" action=\"/console/environments\" class=\"row\">{}\
             <label>Key <input name=\"key\" required pattern=\"[A-Za-z0-9][A-Za-z0-9._\\-]*\"></label>\
             <label>Name <input name=\"name\"></label><button type=\"submit\">Create</button></form>",
            csrf_field(&ctx.csrf)
        );
    }
    Ok(render(
        &ctx,
        &me,
        "Environments",
        Section::Environments,
        &body,
    ))
}

pub(crate) async fn create_environment(ctx: Ctx, form: Form) -> PageResult {
    let key = form.text("key");
    let name = match form.text("name") {
        "" => key,
        n => n,
    };
    ctx.send(
        Method::POST,
        "/v1/environments",
        &json!({"key": key, "name": name}),
        &[],
    )
    .await?;
    Ok(see_other(&format!("/console?did=created&env={}", enc(key))))
}
