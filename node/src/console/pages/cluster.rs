//! Cluster members, leader, lag and health; adding and removing nodes.

use std::fmt::Write;

use axum::extract::{Path, RawQuery};
use axum::http::{Method, StatusCode};
use pulseplane_core::Permission;
use serde_json::json;

use super::super::html::{self, Section, csrf_field, esc};
use super::super::{Ctx, Form};
use super::*;

pub(crate) async fn cluster(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    let me = me(&ctx).await?;
    let q = query_fields(q.as_deref());
    let status = ctx.get("/admin/v1/cluster").await?;
    let manage = me.can(Permission::ClusterManage, None);
    let leader = status["leader"].as_u64();
    let mut body = String::from("<h1>Cluster</h1>");
    body.push_str(&html::notice(&match field(&q, "did") {
        "added" => format!("Added node {}.", field(&q, "id")),
        "removed" => format!("Removed node {}.", field(&q, "id")),
        _ => String::new(),
    }));
    let _ = write!(
        body,
        "<p>Leader: <strong id=\"leader\">{}</strong> · term {} · last log index {} · applied {}</p>\
         <table class=\"list\" id=\"members\"><thead><tr><th scope=\"col\">Node</th><th scope=\"col\">Address</th>\
         <th scope=\"col\">Role</th><th scope=\"col\">Matched</th><th scope=\"col\">Applied</th><th scope=\"col\">Lag</th>\
         <th scope=\"col\">Health</th><th scope=\"col\"></th></tr></thead><tbody>",
        leader.map_or("none".to_owned(), |l| format!("node {l}")),
        s(&status["term"]),
        s(&status["last_log_index"]),
        s(&status["applied_index"]),
    );
    for m in status["members"].as_array().into_iter().flatten() {
        let id = m["id"].as_u64().unwrap_or(0);
        let role = if Some(id) == leader {
            format!("{} (leader)", s(&m["role"]))
        } else {
            s(&m["role"])
        };
        let health = if m["reachable"].as_bool() == Some(true) {
            "<span class=\"badge ok\">reachable</span>"
        } else {
            "<span class=\"badge killed\">unreachable</span>"
        };
        let remove = if manage {
            format!(
                "<form method=\"post\" action=\"/console/cluster/nodes/{id}/remove\" class=\"inline\" \
                 data-confirm=\"Remove node {id} from the cluster?\">{}<input type=\"hidden\" name=\"confirmed\" value=\"\">\
                 <button type=\"submit\" class=\"danger\" aria-label=\"Remove node {id}\">Remove</button></form>",
                csrf_field(&ctx.csrf)
            )
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{health}</td><td>{remove}</td></tr>",
            esc(&s(&m["address"])),
            esc(&role),
            s(&m["matched_index"]),
            s(&m["applied_index"]),
            s(&m["lag"]),
        );
    }
    body.push_str("</tbody></table>");
    if manage {
        let _ = write!(
            body,
            "<h2>Add a node</h2><p class=\"help\">Start the new node first (empty data directory, \
             <code>--join</code>), then add it here: it joins as a learner, catches up, then becomes a voter.</p>\
             <form method=\"post\" action=\"/console/cluster/nodes\" class=\"row\">{}\
             <label>Node id <input name=\"id\" inputmode=\"numeric\" required size=\"6\"></label>\
             <label>Address <input name=\"address\" required placeholder=\"host:port\"></label>\
             <label class=\"check\"><input type=\"checkbox\" name=\"voter\" checked> Voter</label>\
             <button type=\"submit\">Add node</button></form>",
            csrf_field(&ctx.csrf)
        );
    }
    Ok(render(&ctx, &me, "Cluster", Section::Cluster, &body))
}

pub(crate) async fn add_node(ctx: Ctx, form: Form) -> PageResult {
    let Ok(id) = form.text("id").parse::<u64>() else {
        return Err(html::error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Node not added",
            "id: a node id is a whole number",
        ));
    };
    ctx.send(
        Method::POST,
        "/admin/v1/cluster/nodes",
        &json!({"id": id, "address": form.text("address"), "voter": form.checked("voter")}),
        &[],
    )
    .await?;
    Ok(see_other(&format!("/console/cluster?did=added&id={id}")))
}

pub(crate) async fn remove_node(ctx: Ctx, Path(id): Path<u64>, form: Form) -> PageResult {
    if form.get("confirmed") != Some("yes") {
        let me = me(&ctx).await?;
        return Ok(confirm_page(
            &ctx,
            &me,
            &format!("/console/cluster/nodes/{id}/remove"),
            &format!("Remove node {id} from the cluster?"),
            "/console/cluster",
            &form,
        ));
    }
    ctx.call(
        Method::DELETE,
        &format!("/admin/v1/cluster/nodes/{id}"),
        None,
        &[],
    )
    .await?;
    Ok(see_other(&format!("/console/cluster?did=removed&id={id}")))
}
