//! Memory of each service process, from `/proc/<pid>/status`: `VmRSS` now and `VmHWM` (the
//! peak resident set since the process started).

use std::collections::BTreeMap;

/// Resident set of a process, MiB: (`VmRSS`, `VmHWM`).
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|kib| kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// `VmRSS` and `VmHWM` of every pid.
pub fn sample(pids: &BTreeMap<&'static str, u32>) -> BTreeMap<&'static str, (f64, f64)> {
    pids.iter()
        .filter_map(|(name, pid)| rss_mib(*pid).map(|rss| (*name, rss)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_resident_set() {
        let (rss, peak) = rss_mib(std::process::id()).expect("/proc/self/status");
        assert!(rss > 0.0 && peak >= rss, "rss {rss} peak {peak}");
    }
}
