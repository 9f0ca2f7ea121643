//! The export download and the SDK fleet (a page, and JSON for the live
//! panels).

use std::fmt::Write;

use axum::extract::Path;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use pulseplane_core::Permission;
use serde_json::{Value, json};

use super::super::html::{self, Section, Tab, esc};
use super::super::{ApiFailure, Ctx, enc};
use super::*;

pub(crate) async fn export(ctx: Ctx, Path(env): Path<String>) -> PageResult {
    let reply = ctx
        .call(
            Method::GET,
            &format!("/v1/environments/{}/export", enc(&env)),
            None,
            &[],
        )
        .await?;
    let mut r = reply.body.into_response();
    *r.status_mut() = reply.status;
    let h = r.headers_mut();
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_DISPOSITION,
        header::ETAG,
    ] {
        if let Some(v) = reply.headers.get(&name) {
            h.insert(name, v.clone());
        }
    }
    Ok(r)
}

async fn fleet_status(ctx: &Ctx, env: &str) -> Result<Value, ApiFailure> {
    let mut status = ctx
        .get(&format!(
            "/v1/environments/{}/sdk-status?limit=1000",
            enc(env)
        ))
        .await?;
    let items = all_items_from(ctx, env, &mut status).await?;
    status["items"] = Value::Array(items);
    status["next_cursor"] = Value::Null;
    Ok(status)
}

/// The items of a page, taken out of it.
fn take_items(page: &mut Value) -> Vec<Value> {
    match page["items"].take() {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

/// Every instance of a fleet list: the first page's and the rest's.
async fn all_items_from(ctx: &Ctx, env: &str, first: &mut Value) -> Result<Vec<Value>, ApiFailure> {
    let mut items = take_items(first);
    let mut next = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(cursor) = next.filter(|c| !c.is_empty()) {
        let mut page = ctx
            .get(&format!(
                "/v1/environments/{}/sdk-status?limit=1000&cursor={}",
                enc(env),
                enc(&cursor)
            ))
            .await?;
        items.extend(take_items(&mut page));
        next = page["next_cursor"].as_str().map(str::to_owned);
    }
    Ok(items)
}

/// The fleet as JSON for the pages' script (`GET`, no side effects).
pub(crate) async fn fleet_json(ctx: Ctx, Path(env): Path<String>) -> Response {
    match fleet_status(&ctx, &env).await {
        Ok(mut status) => {
            status["line"] = Value::from(fleet_line(&status));
            axum::Json(status).into_response()
        }
        Err(f) => (
            f.status,
            axum::Json(json!({"code": f.code, "message": f.message})),
        )
            .into_response(),
    }
}

fn instance_rows(items: &[Value]) -> String {
    let mut out = String::new();
    for i in items {
        let on = i["on_latest"].as_bool() == Some(true);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} <span class=\"muted\">({:.0} s ago)</span></td><td>{}</td></tr>",
            esc(&s(&i["instance"])),
            s(&i["version"]),
            if on {
                "<span class=\"badge ok\">yes</span>"
            } else {
                "<span class=\"badge draft\">behind</span>"
            },
            esc(&s(&i["last_seen"])),
            i["seconds_ago"].as_f64().unwrap_or(0.0),
            s(&i["node"]),
        );
    }
    out
}

pub(crate) async fn fleet(ctx: Ctx, Path(env): Path<String>) -> PageResult {
    let me = me(&ctx).await?;
    let status = fleet_status(&ctx, &env).await?;
    let items = status["items"].as_array().map_or(&[][..], Vec::as_slice);
    let mut body = html::env_tabs(&env, Tab::Fleet, me.can(Permission::ExportRead, Some(&env)));
    let _ = write!(
        body,
        "<h1>SDK fleet of {}</h1>\
         <section id=\"fleet\" aria-live=\"polite\" data-fleet=\"/console/env/{}/fleet.json\" data-version=\"{}\">\
         <p class=\"fleet-line\">{}</p>\
         <p class=\"muted\">Instances seen in the last {} s, by instance id.</p>\
         <table class=\"list\"><thead><tr><th scope=\"col\">Instance</th><th scope=\"col\">Version held</th>\
         <th scope=\"col\">On latest</th><th scope=\"col\">Last seen</th><th scope=\"col\">Node</th></tr></thead>\
         <tbody class=\"fleet-rows\">{}</tbody></table></section>",
        esc(&env),
        enc(&env),
        s(&status["version"]),
        esc(&fleet_line(&status)),
        s(&status["window_seconds"]),
        instance_rows(items),
    );
    Ok(render(
        &ctx,
        &me,
        &format!("Fleet of {env}"),
        Section::Environments,
        &body,
    ))
}
