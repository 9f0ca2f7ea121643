//! Preview evaluation of every flag for a context.

use std::fmt::Write;

use axum::extract::{Path, RawQuery};
use axum::http::{Method, StatusCode};
use pulseplane_core::Permission;
use serde_json::{Value, json};

use super::super::html::{self, Section, Tab, esc};
use super::super::{Ctx, enc};
use super::*;

const SAMPLE_CONTEXT: &str =
    "{\n  \"targeting_key\": \"user-1\",\n  \"attributes\": {\"country\": \"NL\"}\n}";

pub(crate) async fn evaluate(
    ctx: Ctx,
    Path(env): Path<String>,
    RawQuery(q): RawQuery,
) -> PageResult {
    let me = me(&ctx).await?;
    let q = query_fields(q.as_deref());
    let e = enc(&env);
    let text = match field(&q, "context") {
        "" => SAMPLE_CONTEXT.to_owned(),
        t => t.to_owned(),
    };
    let drafts = field(&q, "draft") == "on";
    let mut result = String::new();
    let mut error = String::new();
    if !field(&q, "context").is_empty() {
        match serde_json::from_str::<Value>(&text) {
            Err(e) => error = format!("context: not valid JSON: {e}"),
            Ok(context) => match ctx
                .send(
                    Method::POST,
                    &format!("/v1/environments/{e}/evaluate"),
                    &json!({"context": context, "draft": drafts}),
                    &[],
                )
                .await
            {
                Err(f) if f.status == StatusCode::UNAUTHORIZED => return Err(f.into()),
                Err(f) => {
                    error = f.message.clone();
                    for (path, problem) in &f.details {
                        let _ = write!(error, " (context{path}: {problem})");
                    }
                }
                Ok(out) => {
                    let _ = write!(
                        result,
                        "<h2>Results ({})</h2><table class=\"list\" id=\"results\"><thead><tr><th scope=\"col\">Flag</th>\
                         <th scope=\"col\">Value</th><th scope=\"col\">Variant</th><th scope=\"col\">Reason</th></tr></thead><tbody>",
                        match out["version"].as_u64() {
                            Some(v) => format!("published version {v}"),
                            None => "drafts".into(),
                        }
                    );
                    for r in out["results"].as_array().into_iter().flatten() {
                        let mut reason = s(&r["reason"]);
                        if let Some(code) = r.get("error_code").filter(|c| !c.is_null()) {
                            let _ = write!(reason, " ({})", s(code));
                        }
                        let _ = write!(
                            result,
                            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                            esc(&s(&r["flag"])),
                            esc(&r["value"].to_string()),
                            esc(&s(&r["variant"])),
                            esc(&reason)
                        );
                    }
                    result.push_str("</tbody></table>");
                }
            },
        }
    }
    let mut body = html::env_tabs(
        &env,
        Tab::Evaluate,
        me.can(Permission::ExportRead, Some(&env)),
    );
    let _ = write!(
        body,
        "<h1>Evaluate in {}</h1><p>The same engine as the SDKs and <code>pulseplane eval</code>.</p>\
         <form method=\"get\" class=\"stack\"><label for=\"context\">Context</label>{}\
         <textarea id=\"context\" name=\"context\" rows=\"8\" spellcheck=\"false\"{}>{}</textarea>\
         <label class=\"check\"><input type=\"checkbox\" name=\"draft\"{}> Evaluate the drafts instead of the published version</label>\
         <button type=\"submit\">Evaluate</button></form>{result}",
        esc(&env),
        if error.is_empty() {
            String::new()
        } else {
            format!(
                "<p class=\"field-error\" id=\"context-error\" role=\"alert\">{}</p>",
                esc(&error)
            )
        },
        if error.is_empty() {
            ""
        } else {
            " aria-invalid=\"true\" aria-describedby=\"context-error\""
        },
        esc(&text),
        if drafts { " checked" } else { "" },
    );
    Ok(render(
        &ctx,
        &me,
        &format!("Evaluate in {env}"),
        Section::Environments,
        &body,
    ))
}
