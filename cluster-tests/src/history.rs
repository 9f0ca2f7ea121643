//! A record of every client operation, and the checker that judges it.
//!
//! Clients record each operation with the time it was invoked and the time
//! its answer came back, and the outcome: `Ok` (acknowledged, with what it
//! read), `Fail` (certainly had no effect) or `Info` (unknown: it timed out
//! or the connection broke, so it may or may not have taken effect). A
//! sampler records each node's applied index and state digest over time.
//!
//! [`check`] then verifies:
//! - **no acknowledged write is lost**: every acknowledged create is in
//!   the final state, and no register's final value is older than a write
//!   acknowledged after the final value's write was;
//! - **linearizable reads are linearizable**: per register key, some total
//!   order of the writes and linearizable reads respects real time and the
//!   semantics of a register (Wing & Gong's search, with memoization, as in
//!   Lowe's checker); a write of unknown outcome may be placed anywhere
//!   after its invocation, or left out;
//! - **versions only grow**: per key, acknowledged operations ordered in
//!   real time see non-decreasing revisions (strictly increasing between
//!   writes), one revision never carries two values, and per environment
//!   the acknowledged publishes' versions increase; per node, what a local
//!   read returns (a flag's revision, the environment's version) never goes
//!   back in real time;
//! - **states agree**: every node that reported a given applied index
//!   reported the same state digest there (so the state a node serves at
//!   index *i* is the state replaying the log up to *i* gives), and no
//!   node's applied index ever went backwards, across restarts included.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Set register (flag) `key` to the unique `value` (its description).
    Write { key: String, value: String },
    /// A linearizable read of register `key`.
    Read { key: String },
    /// A local, possibly stale, read of register `key` on one node.
    LocalRead { key: String },
    /// Create the flag `key`, which no other operation touches.
    Create { key: String },
    /// Publish the environment.
    Publish,
    /// A local read of the environment's version on one node.
    EnvVersion,
}

/// How it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged. Reads carry the value seen (`None`: no such flag);
    /// `revision` is the flag's revision (writes and reads) or the
    /// environment's version (publish, environment reads).
    Ok {
        value: Option<String>,
        revision: Option<u64>,
    },
    /// Certainly had no effect (refused before it was proposed).
    Fail(String),
    /// Unknown: it may or may not have taken effect.
    Info(String),
}

/// One operation.
#[derive(Debug, Clone)]
pub struct Op {
    /// The client that issued it (clients issue one at a time).
    pub process: usize,
    /// The node it was sent to.
    pub node: u64,
    pub call: Call,
    /// Nanoseconds since the run started.
    pub invoke: u64,
    pub complete: u64,
    pub outcome: Outcome,
}

impl Op {
    fn ok(&self) -> Option<(&Option<String>, Option<u64>)> {
        match &self.outcome {
            Outcome::Ok { value, revision } => Some((value, *revision)),
            _ => None,
        }
    }

    fn info(&self) -> bool {
        matches!(self.outcome, Outcome::Info(_))
    }
}

/// One reading of a node's `/admin/v1/node`.
#[derive(Debug, Clone)]
pub struct Sample {
    pub node: u64,
    pub at: u64,
    pub applied_index: u64,
    pub digest: String,
}

/// The state after the run, read linearizably once every fault healed.
#[derive(Debug, Clone, Default)]
pub struct Final {
    /// Flag key → (description, revision).
    pub flags: BTreeMap<String, (String, u64)>,
}

/// The verdict.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub ops: usize,
    pub acknowledged: usize,
    pub indeterminate: usize,
    pub lost_acknowledged_writes: usize,
    /// Everything wrong, one line each (lost writes included).
    pub violations: Vec<String>,
    /// Register keys whose linearizability search gave up (too large).
    pub undecided_keys: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.lost_acknowledged_writes == 0 && self.violations.is_empty()
    }
}

/// Checks a history; see the module documentation.
pub fn check(ops: &[Op], samples: &[Sample], fin: &Final) -> Verdict {
    let mut v = Verdict {
        ops: ops.len(),
        acknowledged: ops.iter().filter(|o| o.ok().is_some()).count(),
        indeterminate: ops.iter().filter(|o| o.info()).count(),
        ..Verdict::default()
    };
    check_lost(ops, fin, &mut v);
    check_registers(ops, fin, &mut v);
    check_revisions(ops, &mut v);
    check_samples(samples, &mut v);
    v
}

fn check_lost(ops: &[Op], fin: &Final, v: &mut Verdict) {
    for op in ops {
        if let (Call::Create { key }, Some(_)) = (&op.call, op.ok())
            && !fin.flags.contains_key(key)
        {
            v.lost_acknowledged_writes += 1;
            v.violations.push(format!(
                "acknowledged create of {key} is not in the final state"
            ));
        }
    }
    // Registers: the final value's write must not be followed, in real
    // time, by an acknowledged write.
    for (key, writes) in register_writes(ops) {
        let Some((value, _)) = fin.flags.get(&key) else {
            if let Some(w) = writes.iter().find(|w| w.ok().is_some()) {
                v.lost_acknowledged_writes += 1;
                v.violations.push(format!(
                    "register {key} is absent at the end, but a write (invoked at {} ns) was acknowledged",
                    w.invoke
                ));
            }
            continue;
        };
        let Some(last) = writes.iter().find(|w| write_value(w) == Some(value)) else {
            v.violations.push(format!(
                "register {key} ends with {value:?}, which no client wrote"
            ));
            continue;
        };
        let end = if last.info() { u64::MAX } else { last.complete };
        for w in &writes {
            if w.ok().is_some() && w.invoke > end {
                v.lost_acknowledged_writes += 1;
                v.violations.push(format!(
                    "register {key}: acknowledged write {:?} is lost: it began after the final value {value:?} was acknowledged",
                    write_value(w).map_or("", String::as_str)
                ));
            }
        }
    }
}

fn write_value(op: &Op) -> Option<&String> {
    match &op.call {
        Call::Write { value, .. } => Some(value),
        _ => None,
    }
}

fn register_writes(ops: &[Op]) -> BTreeMap<String, Vec<&Op>> {
    let mut by_key: BTreeMap<String, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        if let Call::Write { key, .. } = &op.call {
            by_key.entry(key.clone()).or_default().push(op);
        }
    }
    by_key
}

/// One register operation for the linearizability search.
#[derive(Debug, Clone)]
struct RegOp {
    invoke: u64,
    /// `u64::MAX` for a write of unknown outcome.
    complete: u64,
    /// `Some(v)`: a write of value `v`. `None`: a read.
    write: Option<u32>,
    /// For a read, the value seen (`NONE`: absent).
    read: u32,
}

const NONE: u32 = u32::MAX;
/// The most search states one key may take before it is left undecided.
const SEARCH_LIMIT: usize = 2_000_000;

fn check_registers(ops: &[Op], fin: &Final, v: &mut Verdict) {
    let mut keys: BTreeSet<&String> = BTreeSet::new();
    for op in ops {
        if let Call::Write { key, .. } | Call::Read { key } = &op.call {
            keys.insert(key);
        }
    }
    let end = ops.iter().map(|o| o.complete).max().unwrap_or(0);
    for key in keys {
        let mut values: HashMap<&str, u32> = HashMap::new();
        let mut seen: HashSet<u32> = HashSet::new();
        let mut reg: Vec<RegOp> = Vec::new();
        for op in ops {
            match (&op.call, &op.outcome) {
                (Call::Write { key: k, value }, Outcome::Ok { .. } | Outcome::Info(_))
                    if k == key =>
                {
                    reg.push(RegOp {
                        invoke: op.invoke,
                        complete: if op.info() { u64::MAX } else { op.complete },
                        write: Some(id(value, &mut values)),
                        read: NONE,
                    });
                }
                (Call::Read { key: k }, Outcome::Ok { value, .. }) if k == key => {
                    let r = value.as_deref().map_or(NONE, |s| id(s, &mut values));
                    seen.insert(r);
                    reg.push(RegOp {
                        invoke: op.invoke,
                        complete: op.complete,
                        write: None,
                        read: r,
                    });
                }
                _ => {}
            }
        }
        // The final read, after everything.
        let last = fin.flags.get(key).map_or(NONE, |(s, _)| id(s, &mut values));
        seen.insert(last);
        reg.push(RegOp {
            invoke: end + 1,
            complete: end + 2,
            write: None,
            read: last,
        });
        // A write of unknown outcome whose value nobody read can always be
        // left out: drop it to keep the search small.
        reg.retain(|o| o.complete != u64::MAX || o.write.is_some_and(|w| seen.contains(&w)));
        match linearizable(reg) {
            Some(true) => {}
            Some(false) => v.violations.push(format!(
                "register {key}: the reads and writes are not linearizable"
            )),
            None => v.undecided_keys.push(key.clone()),
        }
    }
}

/// A small number standing for value `s` in one key's search.
fn id<'a>(s: &'a str, values: &mut HashMap<&'a str, u32>) -> u32 {
    let n = values.len() as u32;
    *values.entry(s).or_insert(n)
}

/// Wing & Gong's search for a register: `Some(true)` when a legal
/// linearization exists, `Some(false)` when none does, `None` when the
/// search took more than [`SEARCH_LIMIT`] states.
fn linearizable(mut ops: Vec<RegOp>) -> Option<bool> {
    ops.sort_by_key(|o| o.invoke);
    let required = ops.iter().filter(|o| o.complete != u64::MAX).count();
    let mut done = vec![0u64; ops.len().div_ceil(64)];
    let mut memo: HashSet<(Vec<u64>, u32)> = HashSet::new();
    let mut budget = SEARCH_LIMIT;
    search(&ops, &mut done, NONE, required, &mut memo, &mut budget)
}

fn search(
    ops: &[RegOp],
    done: &mut Vec<u64>,
    state: u32,
    required: usize,
    memo: &mut HashSet<(Vec<u64>, u32)>,
    budget: &mut usize,
) -> Option<bool> {
    if required == 0 {
        return Some(true);
    }
    if !memo.insert((done.clone(), state)) {
        return Some(false);
    }
    if *budget == 0 {
        return None;
    }
    *budget -= 1;
    let is_done = |done: &Vec<u64>, i: usize| done[i / 64] & (1 << (i % 64)) != 0;
    // An operation may go next only if no pending one completed before it
    // was invoked.
    let horizon = (0..ops.len())
        .filter(|i| !is_done(done, *i))
        .map(|i| ops[i].complete)
        .min()
        .unwrap_or(u64::MAX);
    for i in 0..ops.len() {
        let op = &ops[i];
        if op.invoke > horizon {
            break;
        }
        if is_done(done, i) {
            continue;
        }
        let next = match op.write {
            Some(w) => w,
            None if op.read == state => state,
            None => continue,
        };
        done[i / 64] |= 1 << (i % 64);
        let left = required - usize::from(op.complete != u64::MAX);
        let found = search(ops, done, next, left, memo, budget);
        done[i / 64] &= !(1 << (i % 64));
        match found {
            Some(false) => {}
            other => return other,
        }
    }
    Some(false)
}

fn check_revisions(ops: &[Op], v: &mut Verdict) {
    // One revision, one value, per key: what reads saw, and what
    // acknowledged writes wrote.
    let mut value_at: HashMap<(&str, u64), Option<&str>> = HashMap::new();
    for op in ops {
        let Some((seen, Some(rev))) = op.ok() else {
            continue;
        };
        let (key, value) = match &op.call {
            Call::Write { key, value } => (key, Some(value.as_str())),
            Call::Read { key } | Call::LocalRead { key } => (key, seen.as_deref()),
            _ => continue,
        };
        if let Some(before) = value_at.insert((key.as_str(), rev), value)
            && before != value
        {
            v.violations.push(format!(
                "flag {key} revision {rev} was read as both {before:?} and {value:?}"
            ));
        }
    }

    // Acknowledged writes and linearizable reads of one key, in real time.
    let mut per_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    // Local reads, per node and key; environment versions per node.
    let mut per_node_key: BTreeMap<(u64, &str), Vec<&Op>> = BTreeMap::new();
    let mut publishes: Vec<&Op> = Vec::new();
    let mut env_reads: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        if op.ok().is_none() {
            continue;
        }
        match &op.call {
            Call::Write { key, .. } | Call::Read { key } => {
                per_key.entry(key).or_default().push(op)
            }
            Call::LocalRead { key } => per_node_key.entry((op.node, key)).or_default().push(op),
            Call::Publish => publishes.push(op),
            Call::EnvVersion => env_reads.entry(op.node).or_default().push(op),
            Call::Create { .. } => {}
        }
    }
    for (key, list) in &per_key {
        ordered(list, true, &format!("flag {key}"), v);
    }
    for ((node, key), list) in &per_node_key {
        ordered(list, false, &format!("flag {key} on node {node}"), v);
    }
    ordered(&publishes, true, "published environment version", v);
    for (node, list) in &env_reads {
        ordered(
            list,
            false,
            &format!("environment version on node {node}"),
            v,
        );
    }
}

/// For every pair where `a` completed before `b` was invoked: `b`'s
/// revision is at least `a`'s, and, with `strict_writes`, greater when
/// both are writes (register writes or publishes).
fn ordered(list: &[&Op], strict_writes: bool, what: &str, v: &mut Verdict) {
    let mut by_invoke: Vec<&Op> = list.to_vec();
    by_invoke.sort_by_key(|o| o.invoke);
    let is_write = |o: &Op| matches!(o.call, Call::Write { .. } | Call::Publish);
    // The op with the highest revision among those completed so far, and
    // the highest among completed writes.
    let mut by_complete: Vec<&Op> = list.to_vec();
    by_complete.sort_by_key(|o| o.complete);
    let mut j = 0;
    let mut best: Option<(u64, &Op)> = None;
    let mut best_write: Option<(u64, &Op)> = None;
    let mut reported = 0;
    for b in by_invoke {
        while j < by_complete.len() && by_complete[j].complete < b.invoke {
            let a = by_complete[j];
            if let Some((_, Some(r))) = a.ok() {
                if best.is_none_or(|(br, _)| r > br) {
                    best = Some((r, a));
                }
                if is_write(a) && best_write.is_none_or(|(br, _)| r > br) {
                    best_write = Some((r, a));
                }
            }
            j += 1;
        }
        let Some((_, Some(rb))) = b.ok() else {
            continue;
        };
        let bad = match (best, best_write) {
            (_, Some((rw, _))) if strict_writes && is_write(b) && rb <= rw => Some(rw),
            (Some((ra, _)), _) if rb < ra => Some(ra),
            _ => None,
        };
        if let Some(before) = bad {
            reported += 1;
            if reported <= 5 {
                v.violations.push(format!(
                    "{what} went back: {rb} (invoked at {} ns) after {before} was already seen",
                    b.invoke
                ));
            }
        }
    }
}

fn check_samples(samples: &[Sample], v: &mut Verdict) {
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    let mut digest_at: BTreeMap<u64, (&str, u64)> = BTreeMap::new();
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.at);
    for s in sorted {
        if let Some(prev) = last.insert(s.node, s.applied_index)
            && s.applied_index < prev
        {
            v.violations.push(format!(
                "node {}'s applied index went back from {prev} to {} (at {} ns)",
                s.node, s.applied_index, s.at
            ));
        }
        match digest_at.get(&s.applied_index) {
            None => {
                digest_at.insert(s.applied_index, (&s.digest, s.node));
            }
            Some((d, other)) if *d != s.digest => v.violations.push(format!(
                "at applied index {} node {} has state {} but node {other} had {d}",
                s.applied_index, s.node, s.digest
            )),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(key: &str, value: &str, invoke: u64, complete: u64, rev: u64) -> Op {
        Op {
            process: 0,
            node: 1,
            call: Call::Write {
                key: key.into(),
                value: value.into(),
            },
            invoke,
            complete,
            outcome: Outcome::Ok {
                value: None,
                revision: Some(rev),
            },
        }
    }

    fn r(key: &str, value: Option<&str>, invoke: u64, complete: u64, rev: u64) -> Op {
        Op {
            process: 1,
            node: 1,
            call: Call::Read { key: key.into() },
            invoke,
            complete,
            outcome: Outcome::Ok {
                value: value.map(Into::into),
                revision: Some(rev),
            },
        }
    }

    fn fin(pairs: &[(&str, &str, u64)]) -> Final {
        Final {
            flags: pairs
                .iter()
                .map(|(k, v, r)| (k.to_string(), (v.to_string(), *r)))
                .collect(),
        }
    }

    #[test]
    fn a_sequential_history_passes() {
        let ops = vec![
            w("k", "a", 0, 10, 1),
            r("k", Some("a"), 11, 20, 1),
            w("k", "b", 21, 30, 2),
            r("k", Some("b"), 31, 40, 2),
        ];
        let v = check(&ops, &[], &fin(&[("k", "b", 2)]));
        assert!(v.ok(), "{v:?}");
    }

    #[test]
    fn concurrent_operations_may_be_ordered_either_way() {
        // The read overlaps the write: it may see the old or new value.
        let ops = vec![
            w("k", "a", 0, 10, 1),
            w("k", "b", 20, 40, 2),
            r("k", Some("a"), 25, 35, 1),
            r("k", Some("b"), 30, 50, 2),
        ];
        assert!(check(&ops, &[], &fin(&[("k", "b", 2)])).ok());
    }

    #[test]
    fn a_stale_linearizable_read_is_caught() {
        let ops = vec![
            w("k", "a", 0, 10, 1),
            w("k", "b", 11, 20, 2),
            r("k", Some("a"), 21, 30, 1),
        ];
        let v = check(&ops, &[], &fin(&[("k", "b", 2)]));
        assert!(!v.ok());
        assert!(
            v.violations.iter().any(|s| s.contains("not linearizable")),
            "{v:?}"
        );
        assert!(
            v.violations.iter().any(|s| s.contains("went back")),
            "{v:?}"
        );
    }

    #[test]
    fn a_lost_acknowledged_write_is_counted() {
        let ops = vec![w("k", "a", 0, 10, 1), w("k", "b", 11, 20, 2)];
        let v = check(&ops, &[], &fin(&[("k", "a", 1)]));
        assert_eq!(v.lost_acknowledged_writes, 1, "{v:?}");
        let mut create = w("u1", "x", 0, 5, 1);
        create.call = Call::Create { key: "u1".into() };
        let v = check(&[create], &[], &Final::default());
        assert_eq!(v.lost_acknowledged_writes, 1);
    }

    #[test]
    fn an_unknown_write_may_or_may_not_have_happened() {
        let mut maybe = w("k", "b", 11, 20, 0);
        maybe.outcome = Outcome::Info("timeout".into());
        // Seen: it happened.
        let ops = vec![
            w("k", "a", 0, 10, 1),
            maybe.clone(),
            r("k", Some("b"), 100, 110, 2),
        ];
        assert!(check(&ops, &[], &fin(&[("k", "b", 2)])).ok());
        // Not seen: it did not.
        let ops = vec![w("k", "a", 0, 10, 1), maybe, r("k", Some("a"), 100, 110, 1)];
        assert!(check(&ops, &[], &fin(&[("k", "a", 1)])).ok());
    }

    #[test]
    fn a_value_nobody_wrote_is_caught() {
        let ops = vec![w("k", "a", 0, 10, 1), r("k", Some("z"), 11, 20, 7)];
        assert!(!check(&ops, &[], &fin(&[("k", "a", 1)])).ok());
    }

    #[test]
    fn diverging_states_and_a_backwards_index_are_caught() {
        let s = |node, at, applied_index, digest: &str| Sample {
            node,
            at,
            applied_index,
            digest: digest.into(),
        };
        let good = [s(1, 0, 5, "x"), s(2, 1, 5, "x"), s(1, 2, 6, "y")];
        assert!(check(&[], &good, &Final::default()).ok());
        let split = [s(1, 0, 5, "x"), s(2, 1, 5, "q")];
        assert!(!check(&[], &split, &Final::default()).ok());
        let back = [s(1, 0, 6, "y"), s(1, 1, 5, "x")];
        assert!(!check(&[], &back, &Final::default()).ok());
    }

    #[test]
    fn many_concurrent_clients_stay_tractable() {
        // 6 clients, 300 operations on one key, overlapping in pairs.
        let mut ops = Vec::new();
        let mut t = 0;
        for i in 0..300u64 {
            let value = format!("v{i}");
            ops.push(w("k", &value, t, t + 30, i + 1));
            ops.push(r("k", Some(&value), t + 25, t + 50, i + 1));
            t += 20;
        }
        let last = format!("v{}", 299);
        let v = check(&ops, &[], &fin(&[("k", &last, 300)]));
        assert!(v.ok() && v.undecided_keys.is_empty(), "{v:?}");
    }
}
