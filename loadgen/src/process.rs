//! Readings of a process on this machine from `/proc`: resident memory and CPU time.

/// `/proc/PID/stat` counts CPU time in clock ticks of `USER_HZ`, which the Linux ABI fixes at 100.
const USER_HZ: f64 = 100.0;

/// Resident set size in KiB (`VmRSS` of `/proc/PID/status`); `None` when the process is gone.
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", self_or(pid))).ok()?;
    parse_rss_kib(&status)
}

/// User plus system CPU seconds the process has used.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", self_or(pid))).ok()?;
    parse_cpu_seconds(&stat)
}

fn self_or(pid: Option<u32>) -> String {
    pid.map_or_else(|| "self".to_owned(), |pid| pid.to_string())
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(value)
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of the whole line are 12 and 13 after the name.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((user + system) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_from_status() {
        assert_eq!(parse_rss_kib("Name:\therald\nVmPeak:\t  100 kB\nVmRSS:\t   12345 kB\n"), Some(12345));
        assert_eq!(parse_rss_kib("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn cpu_from_stat() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 5 0 100 0 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        assert_eq!(parse_cpu_seconds("garbage"), None);
    }

    #[test]
    fn own_process_can_be_read() {
        assert!(rss_kib(None).is_some_and(|kib| kib > 0));
        assert!(cpu_seconds(None).is_some());
    }
}
