//! Per-cycle cost of every node, from `pw-profiler -J` (every cycle, not `pw-top` snapshots).

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;

/// Busy-time statistics of one node over the profiled cycles, in microseconds.
#[derive(Debug, Clone)]
pub struct NodeCost {
    pub name: String,
    pub cycles: usize,
    pub median_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

/// What one profiling run saw.
#[derive(Debug, Clone)]
pub struct Profile {
    pub cycles: usize,
    /// The quantum that actually applied (the driver clock's duration), most common value.
    pub quantum: u32,
    /// Xruns counted by the driver clock during the run.
    pub xruns: u64,
    /// Per node, keyed by node name.
    pub nodes: BTreeMap<String, NodeCost>,
}

impl Profile {
    pub fn node(&self, name: &str) -> Option<&NodeCost> {
        self.nodes.get(name)
    }

    /// Parses `pw-profiler -J` output.
    pub fn parse(json: &str) -> Result<Profile> {
        let all: Vec<Value> =
            serde_json::from_str(json).context("pw-profiler output is not a JSON array")?;
        let mut busy: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut quanta: BTreeMap<u32, usize> = BTreeMap::new();
        let mut xrun_first: Option<u64> = None;
        let mut xrun_last = 0u64;
        let mut cycles = 0usize;
        for e in &all {
            match e.get("type").and_then(Value::as_str) {
                Some("clock") => {
                    cycles += 1;
                    let d = e.get("duration").and_then(Value::as_u64).unwrap_or(0) as u32;
                    *quanta.entry(d).or_default() += 1;
                    let x = e.get("xrun").and_then(Value::as_u64).unwrap_or(0);
                    xrun_first.get_or_insert(x);
                    xrun_last = x;
                }
                Some("driver") | Some("follower") => {
                    if e.get("status").and_then(Value::as_str) != Some("finished") {
                        continue;
                    }
                    let awake = e.get("awake").and_then(Value::as_i64).unwrap_or(0);
                    let finish = e.get("finish").and_then(Value::as_i64).unwrap_or(0);
                    if awake <= 0 || finish < awake {
                        continue;
                    }
                    let name = e
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    busy.entry(name)
                        .or_default()
                        .push((finish - awake) as f64 / 1000.0);
                }
                _ => {}
            }
        }
        if cycles == 0 {
            bail!("the profiler saw no cycle: is a driver running?");
        }
        let quantum = quanta
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(q, _)| *q)
            .unwrap_or(0);
        let nodes = busy
            .into_iter()
            .map(|(name, mut v)| {
                v.sort_by(f64::total_cmp);
                let cost = NodeCost {
                    name: name.clone(),
                    cycles: v.len(),
                    median_us: percentile(&v, 0.5),
                    p99_us: percentile(&v, 0.99),
                    mean_us: v.iter().sum::<f64>() / v.len() as f64,
                };
                (name, cost)
            })
            .collect();
        Ok(Profile {
            cycles,
            quantum,
            xruns: xrun_last.saturating_sub(xrun_first.unwrap_or(0)),
            nodes,
        })
    }
}

/// Nearest-rank percentile of sorted data.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_is_finish_minus_awake_per_node() {
        let json = r#"[
          {"type":"info","count":0},
          {"type":"clock","duration":256,"xrun":3},
          {"type":"driver","name":"drv","awake":1000,"finish":4000,"status":"finished"},
          {"type":"follower","name":"f","awake":2000,"finish":3000,"status":"finished"},
          {"type":"follower","name":"idle","awake":0,"finish":0,"status":"inactive"},
          {"type":"info","count":1},
          {"type":"clock","duration":256,"xrun":5},
          {"type":"driver","name":"drv","awake":1000,"finish":2000,"status":"finished"},
          {"type":"follower","name":"f","awake":2000,"finish":5000,"status":"finished"},
          {}
        ]"#;
        let p = Profile::parse(json).unwrap();
        assert_eq!((p.cycles, p.quantum, p.xruns), (2, 256, 2));
        let f = p.node("f").unwrap();
        assert_eq!((f.cycles, f.median_us, f.p99_us), (2, 1.0, 3.0));
        assert!(p.node("idle").is_none());
    }

    #[test]
    fn percentile_uses_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
