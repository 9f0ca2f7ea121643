//! The `pulseplane` command line (clap). docs/cli.md is generated from it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cli::eval::ValueType;

#[derive(Debug, Parser)]
#[command(
    name = "pulseplane",
    version,
    about = "Pulseplane operator CLI",
    long_about = "Pulseplane operator CLI. Talks to any node of a cluster (failing over to the \
                  next endpoint listed), with the token from PULSEPLANE_TOKEN or --token-file. \
                  Prints tables, or JSON with --json. Exits 0 on success, 1 when the cluster \
                  refused or could not be reached (with the server's message), 2 on a usage error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Node base URLs (http:// or https://), comma-separated; tried in
    /// order.
    #[arg(
        long,
        global = true,
        env = "PULSEPLANE_ENDPOINT",
        default_value = "http://127.0.0.1:7401"
    )]
    pub endpoint: String,
    /// PEM CA certificates that https:// nodes' certificates must chain to
    /// (the nodes' --tls-ca-file).
    #[arg(long, global = true, env = "PULSEPLANE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// A file holding the bearer token (else PULSEPLANE_TOKEN).
    #[arg(long, global = true, env = "PULSEPLANE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The bearer token (prefer --token-file: a command line is visible to
    /// other users).
    #[arg(
        long,
        global = true,
        env = "PULSEPLANE_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Timeout of one request.
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Cluster membership and status.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Environments: list, create, publish, roll back, history.
    #[command(subcommand)]
    Env(EnvCmd),
    /// Flags: read, apply from a file, kill, restore, history.
    #[command(subcommand)]
    Flag(FlagCmd),
    /// Download an environment's bootstrap file (snapshot plus digest),
    /// check its digest, and write it to stdout or --out.
    Export {
        /// Environment key.
        #[arg(long)]
        env: String,
        /// Write here (atomically) instead of to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Require at least this environment version.
        #[arg(long)]
        min_version: Option<u64>,
        /// How long the node may wait for --min-version (at most 60s).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Take a consistent online backup of the whole state from any node,
    /// check its digest, and write it to stdout or --out. Restore with
    /// `pulseplane-node restore`.
    Backup {
        /// Write here (atomically) instead of to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Evaluate a flag from a snapshot or bootstrap file and print the
    /// details as JSON (no cluster needed).
    Eval {
        /// Snapshot or bootstrap file (the SDK snapshot format).
        #[arg(long, env = "PULSEPLANE_SNAPSHOT_FILE")]
        file: PathBuf,
        /// Flag key.
        #[arg(long)]
        flag: String,
        /// Evaluation context as JSON: {"targeting_key": "...", "attributes": {...}}.
        #[arg(long, default_value = "{}")]
        context: String,
        /// The typed call to make, as an SDK would; a served value of another
        /// type gives the default with TYPE_MISMATCH.
        #[arg(long = "type", value_enum, default_value = "json")]
        value_type: ValueType,
        /// The caller's default as JSON, returned when evaluation fails.
        #[arg(long)]
        default: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Members, their roles, lag and reachability (from the leader).
    Status,
    /// Add a node: it joins as a learner, catches up, then becomes a voter.
    Add {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Its advertised host:port.
        #[arg(long)]
        address: String,
        /// Keep it a learner (it replicates but does not vote).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node from the cluster.
    Remove {
        /// The node's id.
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnvCmd {
    /// Environments with their published version.
    List,
    /// Create an environment.
    Create {
        /// Key: letters, digits, '.', '_' and '-'.
        key: String,
        /// Display name (default: the key).
        #[arg(long)]
        name: Option<String>,
    },
    /// Publish drafts as a new version (all of them, or the given flags).
    Publish {
        env: String,
        /// What the version is for.
        #[arg(long, short, default_value = "")]
        message: String,
        /// Publish only these flags (repeatable).
        #[arg(long = "flag")]
        flags: Vec<String>,
    },
    /// Make a new version equal to an earlier one (default: the previous).
    Rollback {
        env: String,
        #[arg(long)]
        to_version: Option<u64>,
        #[arg(long, short, default_value = "")]
        message: String,
    },
    /// Published versions, newest first.
    History { env: String },
}

#[derive(Debug, Subcommand)]
pub enum FlagCmd {
    /// A flag's draft and published state.
    Get { env: String, key: String },
    /// Create or update draft flags from a JSON file: one flag, or a list.
    Apply {
        env: String,
        /// The file (`-` for stdin).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Kill switch: serve the flag's off variant everywhere, at once.
    Kill {
        env: String,
        key: String,
        #[arg(long, short, default_value = "")]
        message: String,
    },
    /// Lift a kill switch.
    Restore {
        env: String,
        key: String,
        #[arg(long, short, default_value = "")]
        message: String,
    },
    /// The versions that changed this flag, newest first.
    History { env: String, key: String },
}

/// docs/cli.md: the help of `pulseplane`, every subcommand, `pulseplane-node`
/// and `pulseplane-node restore`, as clap renders it.
pub fn markdown() -> String {
    use clap::CommandFactory;

    fn quiet(cmd: clap::Command) -> clap::Command {
        // Rendered without the current environment's values.
        cmd.mut_args(|a| a.hide_env_values(true))
            .mut_subcommands(quiet)
    }

    fn walk(cmd: &mut clap::Command, path: &str, out: &mut String) {
        out.push_str(&format!(
            "## `{path}`\n\n```text\n{}\n```\n\n",
            cmd.render_long_help().to_string().trim_end()
        ));
        let names: Vec<String> = cmd
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .map(|s| s.get_name().to_owned())
            .collect();
        for name in names {
            if let Some(sub) = cmd.find_subcommand_mut(&name) {
                walk(sub, &format!("{path} {name}"), out);
            }
        }
    }

    let mut out = String::from(
        "# Command line\n\n\
         Generated from the code (`cargo test -p pulseplane-node --lib cli_docs` checks it; \
         run it with `PULSEPLANE_UPDATE_DOCS=1` to rewrite this file). Every flag of \
         `pulseplane-node` also reads the environment variable shown; see \
         [cluster.md](cluster.md) and [rbac.md](rbac.md) for what they mean.\n\n",
    );
    let mut cli = quiet(Cli::command()).bin_name("pulseplane");
    cli.build();
    walk(&mut cli, "pulseplane", &mut out);
    let mut node = quiet(crate::config::Cli::command()).bin_name("pulseplane-node");
    node.build();
    walk(&mut node, "pulseplane-node", &mut out);
    let mut restore =
        quiet(crate::backup::RestoreCli::command()).bin_name("pulseplane-node restore");
    restore.build();
    walk(&mut restore, "pulseplane-node restore", &mut out);
    format!("{}\n", out.trim_end())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_docs_are_current() {
        let dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
        let path = format!("{dir}/../docs/cli.md");
        let doc = super::markdown();
        assert!(doc.contains("## `pulseplane flag apply`"));
        if std::env::var_os("PULSEPLANE_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &doc).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == doc,
            "docs/cli.md is stale: run PULSEPLANE_UPDATE_DOCS=1 cargo test -p pulseplane-node --lib cli_docs"
        );
    }
}
