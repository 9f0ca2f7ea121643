//! Access control data: the platform's atomic permissions, and the roles,
//! bindings and SDK keys that consumers define through the API. They are
//! replicated with the rest of the state, so a change holds on every node
//! as soon as it commits.
//!
//! A role grants permissions in a set of environments (or `"*"`, all of
//! them). A binding gives a subject (a token's `sub`, or `group:<name>` for
//! a group claim) a list of roles. What is not granted is denied.
//! Cluster-wide permissions (those that name no environment) are granted
//! only by roles whose environments are `"*"`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::command::{CommandError, Outcome};
use crate::issue::{Issue, ValidationError};
use crate::limits::{MAX_NAME_LEN, MAX_TOKEN_LEN, check_key};

/// The most roles, bindings and SDK keys (revoked ones included) the
/// cluster keeps.
pub const MAX_ROLES: usize = 1_000;
pub const MAX_BINDINGS: usize = 10_000;
pub const MAX_SDK_KEYS: usize = 10_000;
/// The most roles one binding names.
pub const MAX_ROLES_PER_BINDING: usize = 100;
/// The prefix of a binding subject that stands for a group claim.
pub const GROUP_PREFIX: &str = "group:";

macro_rules! permissions {
    ($($variant:ident = $name:literal, $scope:ident, $doc:literal;)*) => {
        /// An atomic permission. The list is fixed by the platform.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Permission {
            $(#[doc = $doc] $variant,)*
        }

        impl Permission {
            /// Every permission, in documentation order.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant,)*];

            /// The wire name, such as `flag.publish`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Permission::$variant => $name,)*
                }
            }

            /// Whether the permission applies to one environment (granted
            /// by a role that lists it) or to the whole cluster (granted
            /// only by a role for `"*"`).
            pub fn scope(self) -> PermissionScope {
                match self {
                    $(Permission::$variant => PermissionScope::$scope,)*
                }
            }

            /// What the permission allows.
            pub fn description(self) -> &'static str {
                match self {
                    $(Permission::$variant => $doc,)*
                }
            }
        }

        impl FromStr for Permission {
            type Err = String;

            fn from_str(s: &str) -> Result<Permission, String> {
                match s {
                    $($name => Ok(Permission::$variant),)*
                    _ => Err(format!("{s:?} is not a permission")),
                }
            }
        }
    };
}

permissions! {
    EnvRead = "env.read", Environment,
        "List and read the environment, its SDK fleet and sync status.";
    EnvCreate = "env.create", Environment,
        "Create the environment.";
    EnvDelete = "env.delete", Environment,
        "Delete the environment.";
    FlagRead = "flag.read", Environment,
        "Read flags and segments (draft and published), versions and diffs; preview evaluations.";
    FlagWrite = "flag.write", Environment,
        "Create or edit draft flags.";
    FlagDelete = "flag.delete", Environment,
        "Delete draft flags.";
    FlagPublish = "flag.publish", Environment,
        "Publish drafts as a new version.";
    FlagRollback = "flag.rollback", Environment,
        "Roll the environment back to an earlier version.";
    FlagKill = "flag.kill", Environment,
        "Turn a published flag off at once (kill switch) and restore it.";
    SegmentWrite = "segment.write", Environment,
        "Create, edit and delete draft segments.";
    SnapshotRead = "snapshot.read", Environment,
        "Poll the SDK snapshot (what SDK keys hold).";
    ExportRead = "export.read", Environment,
        "Download the bootstrap export (SDK keys hold it too).";
    SdkKeyManage = "sdk_key.manage", Environment,
        "List, create and revoke the environment's SDK keys.";
    AuditRead = "audit.read", Environment,
        "Read the audit log of the environment (of everything with \"*\").";
    RoleManage = "role.manage", Cluster,
        "Read, create, change and delete roles and bindings.";
    ClusterRead = "cluster.read", Cluster,
        "Read cluster status, this node's status and the settings.";
    ClusterManage = "cluster.manage", Cluster,
        "Add and remove nodes, take snapshots and backups, change the settings.";
}

/// See [`Permission::scope`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PermissionScope {
    Environment,
    Cluster,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Permission, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The environments a role applies to: `"*"` or a list of keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Environments {
    All,
    Only(BTreeSet<String>),
}

impl Environments {
    pub fn contains(&self, env: &str) -> bool {
        match self {
            Environments::All => true,
            Environments::Only(set) => set.contains(env),
        }
    }
}

impl Serialize for Environments {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Environments::All => s.serialize_str("*"),
            Environments::Only(set) => set.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Environments {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Environments, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Star(String),
            List(BTreeSet<String>),
        }
        match Wire::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected \"*\" or a list of environment keys"))?
        {
            Wire::Star(s) if s == "*" => Ok(Environments::All),
            Wire::Star(s) => Err(serde::de::Error::custom(format!(
                "{s:?}: expected \"*\" or a list of environment keys"
            ))),
            Wire::List(set) => Ok(Environments::Only(set)),
        }
    }
}

/// A consumer-defined role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub permissions: BTreeSet<Permission>,
    pub environments: Environments,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

impl Role {
    /// Whether the role grants `permission` in `env` (`None`: cluster-wide).
    pub fn grants(&self, permission: Permission, env: Option<&str>) -> bool {
        if !self.permissions.contains(&permission) {
            return false;
        }
        match (permission.scope(), env) {
            (PermissionScope::Environment, Some(e)) => self.environments.contains(e),
            _ => self.environments == Environments::All,
        }
    }
}

/// The roles bound to a subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub subject: String,
    pub roles: BTreeSet<String>,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

/// A read-only key for one environment's snapshot and export. Only the
/// SHA-256 of the key is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdkKey {
    pub id: String,
    pub env: String,
    pub name: String,
    /// SHA-256 of the whole key, hex.
    pub hash: String,
    pub created_at_ms: i64,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// Roles, bindings and SDK keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessState {
    pub roles: BTreeMap<String, Role>,
    pub bindings: BTreeMap<String, Binding>,
    pub sdk_keys: BTreeMap<String, SdkKey>,
}

/// Checks a binding subject: 1 to 256 bytes, no control characters, and a
/// group name after `group:`.
pub fn check_subject(subject: &str) -> Option<String> {
    if subject.is_empty() || subject.len() > MAX_TOKEN_LEN {
        return Some(format!("must be 1 to {MAX_TOKEN_LEN} bytes"));
    }
    if subject.chars().any(char::is_control) {
        return Some("must not contain control characters".into());
    }
    if subject == GROUP_PREFIX {
        return Some("names no group".into());
    }
    None
}

fn invalid(path: &str, problem: impl Into<String>) -> CommandError {
    CommandError::Invalid(ValidationError {
        issues: vec![Issue::new(path, problem)],
    })
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl AccessState {
    /// The roles bound to `subject` or to any of `groups`, deduplicated.
    pub fn roles_of<'a>(&'a self, subject: &str, groups: &[String]) -> Vec<&'a Role> {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        if let Some(b) = self.bindings.get(subject) {
            names.extend(b.roles.iter().map(String::as_str));
        }
        for g in groups {
            if let Some(b) = self.bindings.get(&format!("{GROUP_PREFIX}{g}")) {
                names.extend(b.roles.iter().map(String::as_str));
            }
        }
        names
            .into_iter()
            .filter_map(|n| self.roles.get(n))
            .collect()
    }

    pub(crate) fn put_role(
        &mut self,
        name: &str,
        permissions: &BTreeSet<Permission>,
        environments: &Environments,
        at_ms: i64,
        by: &str,
    ) -> Result<Outcome, CommandError> {
        let mut issues = Vec::new();
        if let Some(p) = check_key(name) {
            issues.push(Issue::new("/name", p));
        }
        if let Environments::Only(set) = environments {
            for (i, env) in set.iter().enumerate() {
                if let Some(p) = check_key(env) {
                    issues.push(Issue::new(format!("/environments/{i}"), p));
                }
            }
        }
        ValidationError::check(issues)?;
        if !self.roles.contains_key(name) && self.roles.len() >= MAX_ROLES {
            return Err(invalid("/name", format!("at most {MAX_ROLES} roles")));
        }
        let created = !self.roles.contains_key(name);
        self.roles.insert(
            name.to_owned(),
            Role {
                name: name.to_owned(),
                permissions: permissions.clone(),
                environments: environments.clone(),
                updated_at_ms: at_ms,
                updated_by: by.to_owned(),
            },
        );
        Ok(Outcome {
            created,
            ..Outcome::default()
        })
    }

    /// Refused while a binding names the role.
    pub(crate) fn delete_role(&mut self, name: &str) -> Result<Outcome, CommandError> {
        if !self.roles.contains_key(name) {
            return Err(CommandError::RoleNotFound {
                name: name.to_owned(),
            });
        }
        let used_by: Vec<String> = self
            .bindings
            .values()
            .filter(|b| b.roles.contains(name))
            .map(|b| b.subject.clone())
            .take(20)
            .collect();
        if !used_by.is_empty() {
            return Err(CommandError::InUse {
                key: name.to_owned(),
                used_by,
            });
        }
        self.roles.remove(name);
        Ok(Outcome::default())
    }

    /// Every role named must exist.
    pub(crate) fn put_binding(
        &mut self,
        subject: &str,
        roles: &BTreeSet<String>,
        at_ms: i64,
        by: &str,
    ) -> Result<Outcome, CommandError> {
        let mut issues = Vec::new();
        if let Some(p) = check_subject(subject) {
            issues.push(Issue::new("/subject", p));
        }
        if roles.len() > MAX_ROLES_PER_BINDING {
            issues.push(Issue::new(
                "/roles",
                format!("at most {MAX_ROLES_PER_BINDING} roles"),
            ));
        }
        for (i, r) in roles.iter().enumerate() {
            if !self.roles.contains_key(r) {
                issues.push(Issue::new(
                    format!("/roles/{i}"),
                    format!("no role named {r:?}"),
                ));
            }
        }
        ValidationError::check(issues)?;
        if !self.bindings.contains_key(subject) && self.bindings.len() >= MAX_BINDINGS {
            return Err(invalid(
                "/subject",
                format!("at most {MAX_BINDINGS} bindings"),
            ));
        }
        let created = !self.bindings.contains_key(subject);
        self.bindings.insert(
            subject.to_owned(),
            Binding {
                subject: subject.to_owned(),
                roles: roles.clone(),
                updated_at_ms: at_ms,
                updated_by: by.to_owned(),
            },
        );
        Ok(Outcome {
            created,
            ..Outcome::default()
        })
    }

    pub(crate) fn delete_binding(&mut self, subject: &str) -> Result<Outcome, CommandError> {
        match self.bindings.remove(subject) {
            Some(_) => Ok(Outcome::default()),
            None => Err(CommandError::BindingNotFound {
                subject: subject.to_owned(),
            }),
        }
    }

    /// The key's value never reaches the state: the proposer sends its id
    /// and hash.
    pub(crate) fn create_sdk_key(
        &mut self,
        key: &SdkKeyRequest,
        at_ms: i64,
        by: &str,
    ) -> Result<Outcome, CommandError> {
        let mut issues = Vec::new();
        if !is_hex(&key.id, 16) {
            issues.push(Issue::new("/id", "must be 16 lowercase hex digits"));
        }
        if !is_hex(&key.hash, 64) {
            issues.push(Issue::new("/hash", "must be 64 lowercase hex digits"));
        }
        if key.name.len() > MAX_NAME_LEN || key.name.chars().any(char::is_control) {
            issues.push(Issue::new(
                "/name",
                format!("must be at most {MAX_NAME_LEN} bytes without control characters"),
            ));
        }
        ValidationError::check(issues)?;
        if self.sdk_keys.contains_key(&key.id) {
            return Err(invalid("/id", "an SDK key with this id exists"));
        }
        if self.sdk_keys.len() >= MAX_SDK_KEYS {
            return Err(invalid(
                "/id",
                format!("at most {MAX_SDK_KEYS} SDK keys (revoked ones included)"),
            ));
        }
        self.sdk_keys.insert(
            key.id.clone(),
            SdkKey {
                id: key.id.clone(),
                env: key.env.clone(),
                name: key.name.clone(),
                hash: key.hash.clone(),
                created_at_ms: at_ms,
                created_by: by.to_owned(),
                revoked_at_ms: None,
                revoked_by: None,
            },
        );
        Ok(Outcome {
            env: key.env.clone(),
            created: true,
            ..Outcome::default()
        })
    }

    /// Revoking a revoked key changes nothing and succeeds.
    pub(crate) fn revoke_sdk_key(
        &mut self,
        env: &str,
        id: &str,
        at_ms: i64,
        by: &str,
    ) -> Result<Outcome, CommandError> {
        let Some(key) = self.sdk_keys.get_mut(id).filter(|k| k.env == env) else {
            return Err(CommandError::SdkKeyNotFound {
                env: env.to_owned(),
                id: id.to_owned(),
            });
        };
        if key.revoked_at_ms.is_none() {
            key.revoked_at_ms = Some(at_ms);
            key.revoked_by = Some(by.to_owned());
        }
        Ok(Outcome {
            env: env.to_owned(),
            ..Outcome::default()
        })
    }

    /// An environment's keys go with it, so that a new environment of the
    /// same name does not inherit them.
    pub(crate) fn forget_environment(&mut self, env: &str) {
        self.sdk_keys.retain(|_, k| k.env != env);
    }
}

/// What a `CreateSdkKey` command carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdkKeyRequest {
    pub env: String,
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(perms: &[Permission], envs: Environments) -> Role {
        Role {
            name: "r".into(),
            permissions: perms.iter().copied().collect(),
            environments: envs,
            updated_at_ms: 0,
            updated_by: String::new(),
        }
    }

    #[test]
    fn permission_names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(p.name().parse::<Permission>().unwrap(), *p);
            let json = serde_json::to_string(p).unwrap();
            assert_eq!(serde_json::from_str::<Permission>(&json).unwrap(), *p);
        }
        assert!("flag.fly".parse::<Permission>().is_err());
        assert_eq!(Permission::ALL.len(), 17);
    }

    #[test]
    fn roles_grant_in_their_environments_and_cluster_wide_only_for_star() {
        let dev = role(
            &[Permission::FlagPublish, Permission::ClusterRead],
            Environments::Only(["dev".to_owned()].into()),
        );
        assert!(dev.grants(Permission::FlagPublish, Some("dev")));
        assert!(!dev.grants(Permission::FlagPublish, Some("prod")));
        assert!(!dev.grants(Permission::FlagWrite, Some("dev")));
        assert!(!dev.grants(Permission::ClusterRead, None));
        // An environment permission asked for cluster-wide needs "*".
        assert!(!dev.grants(Permission::FlagPublish, None));
        let all = role(
            &[Permission::FlagPublish, Permission::ClusterRead],
            Environments::All,
        );
        assert!(all.grants(Permission::ClusterRead, None));
        assert!(all.grants(Permission::FlagPublish, Some("anything")));
        assert!(all.grants(Permission::FlagPublish, None));
    }

    #[test]
    fn environments_wire_format() {
        let all: Environments = serde_json::from_str("\"*\"").unwrap();
        assert_eq!(all, Environments::All);
        let some: Environments = serde_json::from_str("[\"b\",\"a\"]").unwrap();
        assert_eq!(serde_json::to_string(&some).unwrap(), "[\"a\",\"b\"]");
        assert!(serde_json::from_str::<Environments>("\"prod\"").is_err());
        assert!(serde_json::from_str::<Environments>("3").is_err());
    }

    #[test]
    fn subjects_are_checked() {
        assert!(check_subject("alice@example.com").is_none());
        assert!(check_subject("group:ops").is_none());
        assert!(check_subject("").is_some());
        assert!(check_subject("group:").is_some());
        assert!(check_subject("a\nb").is_some());
        assert!(check_subject(&"x".repeat(257)).is_some());
    }
}
