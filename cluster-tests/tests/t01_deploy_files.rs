//! The files under deploy/ are checked with what a CI machine has: the
//! YAML parses and says what the node needs (stable names, readiness on
//! /readyz, a quorum-keeping disruption budget, consistent member lists),
//! every PULSEPLANE_* variable they set is one the node reads, the systemd
//! unit passes `systemd-analyze verify` where that exists, and the compose
//! file passes `docker compose config` where that exists. No image is
//! built.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use clap::CommandFactory;
use serde::Deserialize;
use serde_yaml::Value;

fn deploy(path: &str) -> PathBuf {
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    PathBuf::from(dir).join("../deploy").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every variable `pulseplane-node` reads.
fn node_variables() -> BTreeSet<String> {
    pulseplane_node::config::Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .chain(["PULSEPLANE_LOG".to_owned()])
        .collect()
}

#[track_caller]
fn assert_known(vars: impl IntoIterator<Item = String>, file: &str) {
    let known = node_variables();
    for v in vars {
        if v.starts_with("PULSEPLANE_") {
            assert!(
                known.contains(&v),
                "{file}: {v} is not a pulseplane-node variable"
            );
        }
    }
}

fn str_of<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string"))
}

#[test]
fn the_environment_file_sets_only_known_variables() {
    let text = read("systemd/pulseplane-node.env");
    let vars: Vec<String> = text
        .lines()
        .map(|l| l.trim().trim_start_matches('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .filter(|k| k.starts_with("PULSEPLANE_"))
        .collect();
    assert!(vars.len() >= 8, "{vars:?}");
    assert_known(vars, "pulseplane-node.env");
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = read("systemd/pulseplane-node.service");
    for needed in [
        "[Unit]",
        "[Service]",
        "[Install]",
        "ExecStart=/usr/local/bin/pulseplane-node",
        "EnvironmentFile=/etc/pulseplane/node.env",
        "KillSignal=SIGTERM",
        "RestartPreventExitStatus=2",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed here: syntax checks only");
        return;
    };
    assert!(out.status.success());
    // Verified with this build's binary and a copy of the environment file
    // in place of the installed paths.
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("node.env");
    std::fs::copy(deploy("systemd/pulseplane-node.env"), &env_file).unwrap();
    let unit = unit
        .replace(
            "ExecStart=/usr/local/bin/pulseplane-node",
            &format!(
                "ExecStart={}",
                pulseplane_cluster_tests::node_binary().display()
            ),
        )
        .replace(
            "EnvironmentFile=/etc/pulseplane/node.env",
            &format!("EnvironmentFile={}", env_file.display()),
        );
    let path = dir.path().join("pulseplane-node.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("pulseplane-node.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
}

#[test]
fn the_compose_file_runs_three_nodes_and_redis() {
    let mut doc: Value = serde_yaml::from_str(&read("docker/docker-compose.yml")).unwrap();
    doc.apply_merge().unwrap();
    let services = doc["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    assert_eq!(names, BTreeSet::from(["node1", "node2", "node3", "redis"]));
    let mut initial = BTreeSet::new();
    for n in 1..=3 {
        let mut svc = doc["services"][format!("node{n}").as_str()].clone();
        svc.apply_merge().unwrap();
        let env = &svc["environment"];
        initial.insert(str_of(env, &["PULSEPLANE_INITIAL_CLUSTER"]).to_owned());
        assert_eq!(str_of(env, &["PULSEPLANE_NODE_ID"]), n.to_string());
        let advertise = str_of(env, &["PULSEPLANE_ADVERTISE"]);
        assert!(
            str_of(env, &["PULSEPLANE_INITIAL_CLUSTER"]).contains(&format!("{n}={advertise}")),
            "node{n} advertises {advertise}"
        );
        let vars: Vec<String> = env
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        assert_known(vars, "docker-compose.yml");
    }
    assert_eq!(
        initial.len(),
        1,
        "the nodes disagree on the members: {initial:?}"
    );
    // `docker compose config` checks the file fully where the plugin
    // exists (it needs no engine).
    let has_compose = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_compose {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cluster-secret"), "x").unwrap();
        std::fs::write(dir.path().join("admin-token"), "y").unwrap();
        let compose = dir.path().join("docker-compose.yml");
        std::fs::copy(deploy("docker/docker-compose.yml"), &compose).unwrap();
        let out = Command::new("docker")
            .args(["compose", "-f"])
            .arg(&compose)
            .args(["config", "--quiet"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("docker compose is not installed here: parsed and checked only");
    }
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_in_another() {
    let text = read("docker/Dockerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].contains(" AS build"));
    assert!(
        !froms[1].contains("rust:"),
        "the runtime image carries no toolchain"
    );
    assert!(text.contains("COPY --from=build"));
    assert!(text.contains("--locked -p pulseplane-node --bins"));
    assert!(text.contains("EXPOSE 7400"));
    assert!(text.contains("/readyz"));
}

#[test]
fn the_kubernetes_manifests_keep_a_quorum_with_stable_names() {
    let text = read("k8s/pulseplane.yaml");
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    let of = |kind: &str| -> Vec<&Value> {
        docs.iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .collect()
    };
    let sts = of("StatefulSet");
    assert_eq!(sts.len(), 1);
    let sts = sts[0];
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"].as_u64(), Some(3));
    let service_name = str_of(spec, &["serviceName"]);
    let headless = of("Service")
        .into_iter()
        .find(|s| s["metadata"]["name"].as_str() == Some(service_name))
        .expect("the StatefulSet's service");
    assert_eq!(str_of(headless, &["spec", "clusterIP"]), "None");
    assert_eq!(
        headless["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );
    let pdb = of("PodDisruptionBudget");
    assert_eq!(pdb.len(), 1);
    assert_eq!(pdb[0]["spec"]["maxUnavailable"].as_u64(), Some(1));
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(&spec["selector"]["matchLabels"], labels);
    assert_eq!(&pdb[0]["spec"]["selector"]["matchLabels"], labels);

    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(
        str_of(container, &["readinessProbe", "httpGet", "path"]),
        "/readyz"
    );
    assert_eq!(
        str_of(container, &["livenessProbe", "httpGet", "path"]),
        "/healthz"
    );
    let script = container["args"][0].as_str().expect("the start script");
    for ordinal in 0..3 {
        let name = format!(
            "{}={}-{ordinal}.${{peers}}:7400",
            ordinal + 1,
            str_of(sts, &["metadata", "name"])
        );
        assert!(
            script.contains(&name),
            "--initial-cluster lacks {name}: {script}"
        );
    }
    assert!(
        script.contains(&format!("peers=\"{service_name}.")),
        "{script}"
    );
    let vars: Vec<String> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| str_of(e, &["name"]).to_owned())
        .collect();
    assert_known(vars, "pulseplane.yaml");
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| str_of(m, &["name"]))
        .collect();
    let claims: Vec<&str> = spec["volumeClaimTemplates"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| str_of(c, &["metadata", "name"]))
        .collect();
    assert!(claims.iter().all(|c| mounts.contains(c)));
}
