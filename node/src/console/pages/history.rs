//! Version history, one version's diff, and rollback.

use std::fmt::Write;

use axum::extract::{Path, RawQuery};
use axum::http::{Method, StatusCode};
use pulseplane_core::Permission;
use serde_json::{Value, json};

use super::super::html::{self, Section, Tab, csrf_field, esc, when};
use super::super::{Ctx, Form, enc};
use super::*;

pub(crate) async fn history(
    ctx: Ctx,
    Path(env): Path<String>,
    RawQuery(q): RawQuery,
) -> PageResult {
    let me = me(&ctx).await?;
    let q = query_fields(q.as_deref());
    let e = enc(&env);
    let info = ctx.get(&format!("/v1/environments/{e}")).await?;
    let current = info["version"].as_u64().unwrap_or(0);
    let cursor = field(&q, "cursor");
    let page = ctx
        .get(&format!(
            "/v1/environments/{e}/versions?limit=50{}",
            if cursor.is_empty() {
                String::new()
            } else {
                format!("&cursor={}", enc(cursor))
            }
        ))
        .await?;
    let can_rollback = me.can(Permission::FlagRollback, Some(&env));
    let mut body = html::env_tabs(
        &env,
        Tab::History,
        me.can(Permission::ExportRead, Some(&env)),
    );
    let _ = write!(body, "<h1>History of {}</h1>", esc(&env));
    body.push_str(&html::notice(&match field(&q, "did") {
        "rolled-back" => format!("Rolled back: version {} is out.", field(&q, "version")),
        _ => String::new(),
    }));
    if can_rollback && current > 1 {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/console/env/{e}/rollback\" class=\"row\" \
             data-confirm=\"Roll {} back one step? Its previous content becomes a new version.\">{}\
             <input type=\"hidden\" name=\"confirmed\" value=\"\">\
             <label>Message <input name=\"message\" size=\"30\"></label>\
             <button type=\"submit\" class=\"danger\" id=\"rollback\">Roll back one step</button></form>",
            esc(&env),
            csrf_field(&ctx.csrf)
        );
    }
    body.push_str(
        "<table class=\"list\"><thead><tr><th scope=\"col\">Version</th><th scope=\"col\">When</th>\
         <th scope=\"col\">Author</th><th scope=\"col\">Action</th><th scope=\"col\">Message</th>\
         <th scope=\"col\">Changed</th><th scope=\"col\"></th></tr></thead><tbody>",
    );
    for v in page["items"].as_array().into_iter().flatten() {
        let n = v["version"].as_u64().unwrap_or(0);
        let changed: Vec<String> = v["changed_flags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| esc(&s(f)))
            .chain(
                v["changed_segments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| format!("segment {}", esc(&s(f)))),
            )
            .collect();
        let action = if can_rollback && n < current {
            format!(
                "<form method=\"post\" action=\"/console/env/{e}/rollback\" class=\"inline\" \
                 data-confirm=\"Roll {} back to version {n}? Its content becomes a new version.\">{}\
                 <input type=\"hidden\" name=\"confirmed\" value=\"\"><input type=\"hidden\" name=\"to_version\" value=\"{n}\">\
                 <button type=\"submit\" aria-label=\"Roll back to version {n}\">Roll back to this</button></form>",
                esc(&env),
                csrf_field(&ctx.csrf)
            )
        } else if n == current {
            "<span class=\"badge ok\">current</span>".into()
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr><td><a href=\"/console/env/{e}/history/{n}\">{n}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            when(v["at_ms"].as_i64().unwrap_or(0)),
            esc(&s(&v["author"])),
            esc(&s(&v["action"])),
            esc(&s(&v["message"])),
            changed.join(", "),
        );
    }
    body.push_str("</tbody></table>");
    if let Some(next) = page["next_cursor"].as_str() {
        let _ = write!(
            body,
            "<p><a href=\"/console/env/{e}/history?cursor={}\">Older versions</a></p>",
            enc(next)
        );
    }
    Ok(render(
        &ctx,
        &me,
        &format!("History of {env}"),
        Section::Environments,
        &body,
    ))
}

pub(crate) async fn version(ctx: Ctx, Path((env, version)): Path<(String, u64)>) -> PageResult {
    let me = me(&ctx).await?;
    let e = enc(&env);
    let from = version.saturating_sub(1);
    let diff = ctx
        .get(&format!(
            "/v1/environments/{e}/versions/{version}?diff_from={from}"
        ))
        .await?;
    let mut body = html::env_tabs(
        &env,
        Tab::History,
        me.can(Permission::ExportRead, Some(&env)),
    );
    let _ = write!(
        body,
        "<h1>Version {version} of {}</h1><p>Changes from version {from}.</p>",
        esc(&env)
    );
    for (kind, list) in [("Flag", &diff["flags"]), ("Segment", &diff["segments"])] {
        for item in list.as_array().into_iter().flatten() {
            let _ = write!(
                body,
                "<h2>{kind} {} <span class=\"badge\">{}</span></h2>{}",
                esc(&s(&item["key"])),
                esc(&s(&item["status"])),
                changes_table(item["changes"].as_array(), false)
            );
        }
    }
    if diff["flags"].as_array().is_none_or(Vec::is_empty)
        && diff["segments"].as_array().is_none_or(Vec::is_empty)
    {
        body.push_str("<p class=\"muted\">No content changes (a kill switch or restore changes no content).</p>");
    }
    let _ = write!(
        body,
        "<p><a href=\"/console/env/{e}/history\">Back to the history</a></p>"
    );
    Ok(render(
        &ctx,
        &me,
        &format!("Version {version} of {env}"),
        Section::Environments,
        &body,
    ))
}

pub(crate) async fn rollback(ctx: Ctx, Path(env): Path<String>, form: Form) -> PageResult {
    if form.get("confirmed") != Some("yes") {
        let me = me(&ctx).await?;
        let question = match form.text("to_version") {
            "" => format!("Roll {env} back one step?"),
            v => format!("Roll {env} back to version {v}?"),
        };
        return Ok(confirm_page(
            &ctx,
            &me,
            &format!("/console/env/{}/rollback", enc(&env)),
            &question,
            &format!("/console/env/{}/history", enc(&env)),
            &form,
        ));
    }
    let mut body = json!({"message": form.text("message")});
    match form.text("to_version") {
        "" => {}
        v => match v.parse::<u64>() {
            Ok(n) => body["to_version"] = Value::from(n),
            Err(_) => {
                return Err(html::error_page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Not rolled back",
                    "to_version: not a version number",
                ));
            }
        },
    }
    let out = ctx
        .send(
            Method::POST,
            &format!("/v1/environments/{}/rollback", enc(&env)),
            &body,
            &[],
        )
        .await?;
    Ok(see_other(&format!(
        "/console/env/{}/history?did=rolled-back&version={}",
        enc(&env),
        version_of(&out)
    )))
}
