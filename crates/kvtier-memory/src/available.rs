//! How much memory this process can still use: `MemAvailable` from
//! `/proc/meminfo`, lowered by a cgroup v2 limit (`memory.max -
//! memory.current`) when one applies. Used to refuse, with both numbers,
//! tiers and inputs that would otherwise end in the OOM killer or an
//! allocation abort.

/// Bytes this process can still allocate, and where that limit comes from;
/// `None` if neither source can be read (callers then skip their check).
pub fn available_memory() -> Option<(u64, String)> {
    let mut best: Option<(u64, String)> = None;
    if let Ok(m) = std::fs::read_to_string("/proc/meminfo") {
        if let Some(kb) = m
            .lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
        {
            best = Some((kb * 1024, "MemAvailable in /proc/meminfo".into()));
        }
    }
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    if let (Some(max), Some(cur)) = (
        read("/sys/fs/cgroup/memory.max"),
        read("/sys/fs/cgroup/memory.current"),
    ) {
        let free = max.saturating_sub(cur);
        if best.as_ref().is_none_or(|(b, _)| free < *b) {
            best = Some((
                free,
                format!("cgroup memory limit {max} bytes, {cur} in use"),
            ));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_something_on_linux() {
        let (n, from) = super::available_memory().expect("/proc/meminfo");
        assert!(n > 0, "{from}");
    }
}
