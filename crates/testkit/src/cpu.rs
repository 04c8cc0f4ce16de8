//! CPU time of a process or of named threads, from `/proc` (Linux).
//!
//! A load figure is only comparable as CPU-seconds per unit of work: wall-clock
//! capacity depends on how many cores a target grabbed and what else the machine ran.

/// Whose CPU time to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuProbe {
    None,
    /// A whole process, all its threads.
    Process(u32),
    /// Threads of this process whose name starts with the prefix.
    Threads(String),
}

impl CpuProbe {
    /// CPU seconds used so far (user + system); `None` when not measurable.
    pub fn seconds(&self) -> Option<f64> {
        match self {
            CpuProbe::None => None,
            CpuProbe::Process(pid) => {
                stat_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
            }
            CpuProbe::Threads(prefix) => {
                let mut total = None;
                for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
                    let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                    if comm.trim_end().starts_with(prefix.as_str()) {
                        let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
                        *total.get_or_insert(0.0) += stat_seconds(&stat)?;
                    }
                }
                total
            }
        }
    }
}

/// utime + stime of a `/proc/.../stat` line, seconds.
pub fn stat_seconds(stat: &str) -> Option<f64> {
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // Fields after the ")" that closes the command name (which may hold spaces):
    // utime is the 12th and stime the 13th of them.
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace().skip(11);
    let ut: f64 = f.next()?.parse().ok()?;
    let st: f64 = f.next()?.parse().ok()?;
    (ticks > 0.0).then(|| (ut + st) / ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_in_the_name_parses() {
        let line = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(stat_seconds(line), Some(300.0 / ticks));
        assert_eq!(stat_seconds("garbage"), None);
        assert_eq!(stat_seconds("1 (x) S 1"), None);
    }

    #[test]
    fn a_busy_thread_and_this_process_show_cpu_time() {
        let t = std::thread::Builder::new()
            .name("cpuprobe-test".into())
            .spawn(|| {
                let t0 = std::time::Instant::now();
                let mut x = 0u64;
                while t0.elapsed() < std::time::Duration::from_millis(300) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                std::hint::black_box(x);
                CpuProbe::Threads("cpuprobe-test".into()).seconds()
            })
            .unwrap();
        let own = t.join().unwrap().unwrap();
        assert!(own > 0.05, "{own}");
        let me = CpuProbe::Process(std::process::id()).seconds().unwrap();
        assert!(me >= own);
        assert_eq!(CpuProbe::Threads("no-such-thread".into()).seconds(), None);
    }
}
