//! What the kernel says about the processes of a run (`/proc`): peak and current
//! resident memory, and CPU time, so a figure can be told apart from what bounds it.
//!
//! CPU is counted per group of processes (the three dora binaries, nats-server, every
//! PostgreSQL process, the benchmark itself) from `utime + stime + cutime + cstime`:
//! the children's part keeps the time of PostgreSQL backends that ended between two
//! samples (the postmaster reaps them), so a connection that closed is not lost.

use std::collections::BTreeMap;
use std::time::Instant;

/// Resident memory of one process, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Memory {
    /// Peak resident set (`VmHWM`).
    pub peak: u64,
    /// Resident set now (`VmRSS`).
    pub now: u64,
}

/// `VmHWM` and `VmRSS` of `pid`; `None` when it is gone or unreadable.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |field: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(field))?;
        let value = line[field.len()..].trim().trim_end_matches("kB").trim();
        value.parse::<u64>().ok().map(|kb| kb * 1024)
    };
    Some(Memory {
        peak: kb("VmHWM:")?,
        now: kb("VmRSS:")?,
    })
}

/// CPU time of `pid` and of its reaped children, in clock ticks.
fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count from the last one.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the man page, utime 14 .. cstime 17.
    let at = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(at(14)? + at(15)? + at(16)? + at(17)?)
}

/// Every process whose command name (`/proc/<pid>/comm`) is `name`.
pub fn pids_named(name: &str) -> Vec<u32> {
    pids_where(name, "")
}

/// Every process whose command name is `name` and whose command line (as the process
/// shows it: a PostgreSQL backend puts its database there) contains `text`.
pub fn pids_where(name: &str, text: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .filter(|pid| {
            text.is_empty()
                || std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|line| String::from_utf8_lossy(&line).contains(text))
        })
        .collect()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when that fails).
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Busy and total ticks of the whole machine (`/proc/stat`), every core together.
fn machine() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = cpu.iter().take(8).sum();
    // idle and iowait
    let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// A named group of processes whose CPU time is added up.
#[derive(Debug, Clone)]
pub enum Group {
    /// These process ids.
    Pids(Vec<u32>),
    /// Every process with this command name at the moment of the sample.
    Named(String),
    /// Every process with this command name whose command line contains the text, at
    /// the moment of the sample.
    Matching(String, String),
}

impl Group {
    fn ticks(&self) -> u64 {
        let pids = match self {
            Group::Pids(pids) => pids.clone(),
            Group::Named(name) => pids_named(name),
            Group::Matching(name, text) => pids_where(name, text),
        };
        pids.into_iter().filter_map(ticks).sum()
    }
}

/// A sample of the groups' CPU time.
#[derive(Debug, Clone)]
pub struct Sample {
    at: Instant,
    groups: BTreeMap<String, u64>,
    machine: (u64, u64),
}

/// Named groups of processes, sampled at the edges of each measured phase.
#[derive(Debug, Clone, Default)]
pub struct Cpu {
    groups: Vec<(String, Group)>,
}

impl Cpu {
    /// Adds a group, or replaces the one of the same name where it stands (a process
    /// that starts later keeps its column).
    pub fn watch(&mut self, name: &str, group: Group) {
        match self.groups.iter_mut().find(|(n, _)| n == name) {
            Some((_, g)) => *g = group,
            None => self.groups.push((name.to_owned(), group)),
        }
    }

    /// Each group's CPU time now.
    pub fn sample(&self) -> Sample {
        Sample {
            at: Instant::now(),
            groups: self
                .groups
                .iter()
                .map(|(name, group)| (name.clone(), group.ticks()))
                .collect(),
            machine: machine(),
        }
    }

    /// Cores each group kept busy between `from` and now (1.0 is one core all the
    /// time), in the order the groups were added, and the whole machine's busy cores.
    pub fn since(&self, from: &Sample) -> Usage {
        let to = self.sample();
        let hz = ticks_per_second();
        let wall = to.at.duration_since(from.at).as_secs_f64().max(1e-9);
        let cores = |ticks: u64| ticks as f64 / hz / wall;
        let groups = self
            .groups
            .iter()
            .map(|(name, _)| {
                let before = from.groups.get(name).copied().unwrap_or(0);
                let after = to.groups.get(name).copied().unwrap_or(0);
                (name.clone(), cores(after.saturating_sub(before)))
            })
            .collect();
        let (busy, total) = (
            to.machine.0.saturating_sub(from.machine.0),
            to.machine.1.saturating_sub(from.machine.1),
        );
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        Usage {
            groups,
            machine: if total == 0 {
                0.0
            } else {
                busy as f64 / total as f64 * cpus
            },
        }
    }
}

/// Cores busy during one phase.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Each group's, in the order they were added.
    pub groups: Vec<(String, f64)>,
    /// The whole machine's, whoever used them.
    pub machine: f64,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, cores) in &self.groups {
            write!(f, "{name} {cores:.2}, ")?;
        }
        write!(f, "machine {:.2} cores busy", self.machine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let me = std::process::id();
        let m = memory(me).expect("own status");
        assert!(m.peak >= m.now && m.now > 0, "{m:?}");
        // Burn a little CPU so the tick count cannot be zero.
        let mut x = 0u64;
        let started = Instant::now();
        while started.elapsed().as_millis() < 50 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(ticks(me).expect("own stat") > 0);
        assert!(memory(u32::MAX).is_none());
    }

    #[test]
    fn usage_counts_a_busy_group() {
        let mut cpu = Cpu::default();
        cpu.watch("me", Group::Pids(vec![std::process::id()]));
        let from = cpu.sample();
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 200 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        let usage = cpu.since(&from);
        assert_eq!(usage.groups.len(), 1);
        // Not more: the machine may be shared, and the spin get a slice of a core.
        assert!(usage.groups[0].1 > 0.0, "{usage}");
    }
}
