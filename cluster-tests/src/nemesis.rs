//! The nemesis: a recorded workload on a real cluster while faults are
//! mixed at random, then the history checker's verdict.
//!
//! The seed fixes the whole plan before the run starts (which fault, on
//! which nodes, when and for how long) and every client's sequence of
//! requests, so a seed reproduces the same run; only the timing of the
//! real processes differs. Faults: partitions into a minority and a
//! majority, a node cut off, one-way partitions, delayed links, SIGSTOP
//! pauses longer than the election timeout, and kill -9 with a restart.
//! Each lasts 1–4 s, followed by 1–2 s of calm.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::Cluster;
use crate::history::{Call, Op, Outcome, Verdict};
use crate::workload::{self, Config};

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Both ways between `minority` and the rest.
    Partition { minority: Vec<u64> },
    /// One node cut off from every other.
    Isolate { node: u64 },
    /// Bytes from `from` to `to` are held.
    OneWay { from: u64, to: u64 },
    /// Both directions between `a` and `b` delayed.
    Delay { a: u64, b: u64, ms: u64 },
    /// SIGSTOP, SIGCONT at the end.
    Pause { node: u64 },
    /// kill -9, restarted at the end.
    Kill { node: u64 },
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition { .. } => "partition",
            Fault::Isolate { .. } => "isolate",
            Fault::OneWay { .. } => "one-way",
            Fault::Delay { .. } => "delay",
            Fault::Pause { .. } => "pause",
            Fault::Kill { .. } => "kill",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Partition { minority } => write!(f, "partition {minority:?} | rest"),
            Fault::Isolate { node } => write!(f, "isolate node {node}"),
            Fault::OneWay { from, to } => write!(f, "block {from} -> {to}"),
            Fault::Delay { a, b, ms } => write!(f, "delay {a} <-> {b} by {ms} ms"),
            Fault::Pause { node } => write!(f, "SIGSTOP node {node}"),
            Fault::Kill { node } => write!(f, "kill -9 node {node}"),
        }
    }
}

/// A fault at a time, for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub lasts: Duration,
    pub fault: Fault,
}

/// The faults of a run, in order, fixed by the seed.
pub fn plan(seed: u64, nodes: u64, duration: Duration) -> Vec<Step> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut steps = Vec::new();
    // Calm at the start, so the workload is under way.
    let mut at = Duration::from_millis(rng.u64(1000..2000));
    let node = |rng: &mut fastrand::Rng| rng.u64(1..=nodes);
    // Two different nodes.
    let pair = |rng: &mut fastrand::Rng| {
        let a = node(rng);
        loop {
            let b = node(rng);
            if b != a {
                return (a, b);
            }
        }
    };
    loop {
        let lasts = Duration::from_millis(rng.u64(1000..4000));
        if at + lasts > duration {
            break;
        }
        let fault = match rng.u32(..6) {
            0 => {
                let mut ids: Vec<u64> = (1..=nodes).collect();
                rng.shuffle(&mut ids);
                ids.truncate(((nodes - 1) / 2).max(1) as usize);
                ids.sort_unstable();
                Fault::Partition { minority: ids }
            }
            1 => Fault::Isolate {
                node: node(&mut rng),
            },
            2 => {
                let (from, to) = pair(&mut rng);
                Fault::OneWay { from, to }
            }
            3 => {
                let (a, b) = pair(&mut rng);
                Fault::Delay {
                    a,
                    b,
                    ms: rng.u64(50..300),
                }
            }
            4 => Fault::Pause {
                node: node(&mut rng),
            },
            _ => Fault::Kill {
                node: node(&mut rng),
            },
        };
        steps.push(Step { at, lasts, fault });
        at += lasts + Duration::from_millis(rng.u64(1000..2000));
    }
    steps
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub duration: Duration,
    pub nodes: u64,
    pub clients: usize,
    /// The `pulseplane-node` binary.
    pub node_bin: std::path::PathBuf,
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Report {
    pub options: Options,
    pub steps: Vec<Step>,
    pub verdict: Verdict,
    /// The longest time with no acknowledged write.
    pub max_unavailable: Duration,
    /// Operations per kind of call: (all, acknowledged).
    pub by_call: BTreeMap<&'static str, (usize, usize)>,
    pub elapsed: Duration,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.verdict.ok()
    }

    /// The summary table and the verdict, then the `NEMESIS_RESULT` line.
    pub fn render(&self) -> String {
        let v = &self.verdict;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nnemesis seed {} on {} nodes, {} clients, {:.0} s planned ({:.1} s in all)\n",
            self.options.seed,
            self.options.nodes,
            self.options.clients,
            self.options.duration.as_secs_f64(),
            self.elapsed.as_secs_f64()
        );
        let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &self.steps {
            *faults.entry(s.fault.kind()).or_default() += 1;
        }
        let fault_list = faults
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(out, "| measure | value |\n| --- | --- |");
        let _ = writeln!(
            out,
            "| operations | {} ({} acknowledged, {} unknown) |",
            v.ops, v.acknowledged, v.indeterminate
        );
        for (call, (all, acked)) in &self.by_call {
            let _ = writeln!(out, "| - {call} | {all} ({acked} acknowledged) |");
        }
        let _ = writeln!(
            out,
            "| faults injected | {} ({fault_list}) |",
            self.steps.len()
        );
        let _ = writeln!(
            out,
            "| maximum unavailability | {} ms |",
            self.max_unavailable.as_millis()
        );
        let _ = writeln!(
            out,
            "| lost acknowledged writes | {} |",
            v.lost_acknowledged_writes
        );
        let _ = writeln!(out, "| history violations | {} |", v.violations.len());
        if !v.undecided_keys.is_empty() {
            let _ = writeln!(out, "| undecided keys | {:?} |", v.undecided_keys);
        }
        for line in v.violations.iter().take(20) {
            let _ = writeln!(out, "violation: {line}");
        }
        let _ = writeln!(
            out,
            "\nverdict: {}",
            if self.ok() { "PASS" } else { "FAIL" }
        );
        let result = serde_json::json!({
            "ok": self.ok(),
            "seed": self.options.seed,
            "lost_acknowledged_writes": v.lost_acknowledged_writes,
            "violations": v.violations.len(),
            "ops": v.ops,
            "acknowledged": v.acknowledged,
            "faults": self.steps.len(),
            "max_unavailability_ms": self.max_unavailable.as_millis() as u64,
        });
        let _ = write!(out, "NEMESIS_RESULT {result}");
        out
    }
}

const ENV: &str = "nemesis";

/// Runs the plan of `opts.seed` on a new cluster; prints each fault as it
/// starts.
pub async fn run(opts: Options) -> Report {
    let steps = plan(opts.seed, opts.nodes, opts.duration);
    let started = Instant::now();
    let mut c = Cluster::start_faulty_from(opts.node_bin.clone(), opts.nodes, &[]).await;
    c.create_env(1, ENV).await;
    let ids: Vec<u64> = (1..=opts.nodes).collect();
    let w = workload::start(
        &c.client,
        ids.iter().map(|id| (*id, c.url(*id))).collect(),
        Config {
            env: ENV.into(),
            clients: opts.clients,
            seed: opts.seed,
            ..Config::default()
        },
    );
    let t0 = w.started;
    for step in &steps {
        tokio::time::sleep_until((t0 + step.at).into()).await;
        println!(
            "{:>6.1} s  {} for {:.1} s",
            step.at.as_secs_f64(),
            step.fault,
            step.lasts.as_secs_f64()
        );
        start_fault(&mut c, &step.fault);
        tokio::time::sleep(step.lasts).await;
        end_fault(&mut c, &step.fault).await;
    }
    tokio::time::sleep_until((t0 + opts.duration).into()).await;
    let verdict = c.verdict_with(w, ENV, &ids).await;
    let (verdict, ops) = verdict;
    Report {
        max_unavailable: max_unavailable(&ops, opts.duration),
        by_call: by_call(&ops),
        options: opts,
        steps,
        verdict,
        elapsed: started.elapsed(),
    }
}

fn start_fault(c: &mut Cluster, fault: &Fault) {
    let net = c.net();
    match fault {
        Fault::Partition { minority } => {
            let rest: Vec<u64> = c
                .nodes
                .keys()
                .copied()
                .filter(|id| !minority.contains(id))
                .collect();
            net.partition(minority, &rest);
        }
        Fault::Isolate { node } => net.isolate(*node),
        Fault::OneWay { from, to } => net.block(*from, *to),
        Fault::Delay { a, b, ms } => {
            net.delay(*a, *b, Duration::from_millis(*ms));
            net.delay(*b, *a, Duration::from_millis(*ms));
        }
        Fault::Pause { node } => c.pause(*node),
        Fault::Kill { node } => c.kill9(*node),
    }
}

async fn end_fault(c: &mut Cluster, fault: &Fault) {
    match fault {
        Fault::Pause { node } => c.resume(*node),
        Fault::Kill { node } => {
            c.spawn(*node);
            c.wait_ready(*node, Duration::from_secs(30)).await;
        }
        _ => c.net().heal(),
    }
}

fn is_write(call: &Call) -> bool {
    matches!(
        call,
        Call::Write { .. } | Call::Create { .. } | Call::Publish
    )
}

/// The longest stretch of the run with no acknowledged write.
pub fn max_unavailable(ops: &[Op], duration: Duration) -> Duration {
    let mut acks: Vec<u64> = ops
        .iter()
        .filter(|o| is_write(&o.call) && matches!(o.outcome, Outcome::Ok { .. }))
        .map(|o| o.complete)
        .collect();
    acks.sort_unstable();
    let end = duration.as_nanos() as u64;
    let mut last = 0u64;
    let mut worst = 0u64;
    for t in acks.into_iter().chain([end]) {
        worst = worst.max(t.saturating_sub(last));
        last = last.max(t);
    }
    Duration::from_nanos(worst)
}

fn by_call(ops: &[Op]) -> BTreeMap<&'static str, (usize, usize)> {
    let mut m: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
    for o in ops {
        let name = match o.call {
            Call::Write { .. } => "register write",
            Call::Read { .. } => "linearizable read",
            Call::LocalRead { .. } => "local read",
            Call::Create { .. } => "create",
            Call::Publish => "publish",
            Call::EnvVersion => "environment read",
        };
        let e = m.entry(name).or_default();
        e.0 += 1;
        if matches!(o.outcome, Outcome::Ok { .. }) {
            e.1 += 1;
        }
    }
    m
}

/// Parses `60s`, `2m`, `500ms` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 60s, 2m or 500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: the unit must be ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fixes_the_plan() {
        let a = plan(7, 3, Duration::from_secs(60));
        assert_eq!(a, plan(7, 3, Duration::from_secs(60)));
        assert_ne!(a, plan(8, 3, Duration::from_secs(60)));
        assert!(a.len() >= 8, "{a:?}");
        for s in &a {
            assert!(s.at + s.lasts <= Duration::from_secs(60));
        }
        // A majority always remains in a partition.
        for seed in 0..50 {
            for s in plan(seed, 5, Duration::from_secs(30)) {
                if let Fault::Partition { minority } = s.fault {
                    assert!(minority.len() <= 2, "{minority:?}");
                }
            }
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("9"), Ok(Duration::from_secs(9)));
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn unavailability_is_the_longest_gap_between_acknowledged_writes() {
        let op = |complete_ms: u64, ok: bool| Op {
            process: 0,
            node: 1,
            call: Call::Publish,
            invoke: 0,
            complete: complete_ms * 1_000_000,
            outcome: if ok {
                Outcome::Ok {
                    value: None,
                    revision: Some(1),
                }
            } else {
                Outcome::Info("timeout".into())
            },
        };
        let ops = [op(100, true), op(200, true), op(900, false), op(1500, true)];
        assert_eq!(
            max_unavailable(&ops, Duration::from_secs(2)),
            Duration::from_millis(1300)
        );
    }
}
