//! CPU time spent by each part of the fleet, from `/proc/<pid>/stat` (`utime + stime`): over a
//! run, the CPU milliseconds each part spends per order. On a machine of a few cores shared by
//! everything, that sum is what bounds throughput (`cores × 1000 ÷ ms per order`), and its
//! split says which part to make cheaper.

use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`: 100 on Linux, whatever the
/// kernel's own tick).
const TICKS_PER_SECOND: f64 = 100.0;

/// One process's parent and CPU seconds so far: (parent, own, reaped children's).
fn cpu_seconds(pid: u32) -> Option<(u32, f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let parent = fields.get(1)?.parse::<u32>().ok()?;
    let own = (field(11)? + field(12)?) / TICKS_PER_SECOND;
    let children = (field(13)? + field(14)?) / TICKS_PER_SECOND;
    Some((parent, own, children))
}

/// What to sample: a name per part, and its pid. A part marked `with_children` also counts
/// every process whose parent it is (PostgreSQL's backends), and the children it reaped.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub pid: u32,
    pub with_children: bool,
}

/// CPU seconds of each part at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sample(BTreeMap<String, f64>);

impl Sample {
    pub fn take(parts: &[Part]) -> Self {
        let needs_children = parts.iter().any(|part| part.with_children);
        let mut by_parent: BTreeMap<u32, f64> = BTreeMap::new();
        if needs_children && let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
                if let Some((parent, own, _)) = pid.and_then(cpu_seconds) {
                    *by_parent.entry(parent).or_default() += own;
                }
            }
        }
        let mut seconds = BTreeMap::new();
        for part in parts {
            let Some((_, own, reaped)) = cpu_seconds(part.pid) else {
                continue;
            };
            let total = if part.with_children {
                own + reaped + by_parent.get(&part.pid).copied().unwrap_or_default()
            } else {
                own
            };
            seconds.insert(part.name.clone(), total);
        }
        Self(seconds)
    }

    /// CPU seconds per part from `earlier` to this sample.
    pub fn since(&self, earlier: &Sample) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .map(|(name, now)| {
                let before = earlier.0.get(name).copied().unwrap_or_default();
                (name.clone(), (now - before).max(0.0))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cpu_this_process_spends() {
        let me = [Part {
            name: "me".to_owned(),
            pid: std::process::id(),
            with_children: false,
        }];
        let before = Sample::take(&me);
        // Spin until the counted CPU time shows it (a loaded machine gives this process less
        // than the wall time), within a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut x: u64 = 0;
        let mut spent = 0.0;
        while spent < 0.05 && std::time::Instant::now() < deadline {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            spent = Sample::take(&me).since(&before)["me"];
        }
        std::hint::black_box(x);
        assert!(spent >= 0.05, "spun for 30 s, counted {spent} s of CPU");
    }
}
