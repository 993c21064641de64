//! Workers and processes: timely's own cluster options, parsed here because clap owns
//! `-h`.
//!
//! `-w N` worker threads per process, `-n N` processes, `-p I` this process's index,
//! `-h FILE` hostfile (one `host:port` per line, the process with index i listening on
//! line i+1). Without `-h`, processes listen on 127.0.0.1:2101+i. Every process runs the
//! same command on the same store; inputs are sharded by position over all workers, and
//! worker 0 (of process 0) is the one writer of results.

use std::ffi::OsString;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use timely::worker::Worker;

/// Where this process stands in the computation.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub workers: usize,
    pub processes: usize,
    pub process: usize,
    pub hostfile: Option<PathBuf>,
    /// How long to wait for the other processes before giving up.
    pub connect_timeout: Duration,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            workers: 1,
            processes: 1,
            process: 0,
            hostfile: None,
            connect_timeout: Duration::from_secs(60),
        }
    }
}

/// The flags this module owns.
pub const FLAGS: &str = "-w/--workers N, -n/--processes N, -p/--process I, -h/--hostfile FILE, --connect-timeout SECONDS";

impl Cluster {
    /// Takes the cluster options out of `args` (the rest goes to clap). `-h` followed by a
    /// value is the hostfile; `-h` alone, or followed by a flag, stays the help flag.
    pub fn extract(args: &mut Vec<OsString>) -> Result<(Cluster, bool)> {
        let mut c = Cluster::default();
        let mut given = false;
        let mut rest = Vec::with_capacity(args.len());
        let mut it = std::mem::take(args).into_iter().peekable();
        while let Some(a) = it.next() {
            let s = a.to_string_lossy().into_owned();
            let (flag, inline) = match s.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (s.clone(), None),
            };
            let known = matches!(
                flag.as_str(),
                "-w" | "--workers"
                    | "-n"
                    | "--processes"
                    | "-p"
                    | "--process"
                    | "-h"
                    | "--hostfile"
                    | "--connect-timeout"
            );
            let next_is_value = it
                .peek()
                .is_some_and(|n| !n.to_string_lossy().starts_with('-'));
            if !known || (flag == "-h" && !next_is_value) {
                rest.push(a);
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None if next_is_value => it.next().expect("peeked").to_string_lossy().into_owned(),
                None => bail!("{flag} needs a value ({FLAGS})"),
            };
            let number = |what: &str| -> Result<usize> {
                value
                    .parse()
                    .with_context(|| format!("{flag} {value}: {what} must be a whole number"))
            };
            given = true;
            match flag.as_str() {
                "-w" | "--workers" => c.workers = number("the worker count")?,
                "-n" | "--processes" => c.processes = number("the process count")?,
                "-p" | "--process" => c.process = number("the process index")?,
                "--connect-timeout" => {
                    c.connect_timeout =
                        Duration::from_secs(number("the timeout in seconds")? as u64)
                }
                _ => c.hostfile = Some(PathBuf::from(value)),
            }
        }
        *args = rest;
        if c.workers == 0 || c.processes == 0 {
            bail!("-w and -n need at least 1");
        }
        if c.process >= c.processes {
            bail!(
                "-p {}: the process index must be below -n {}",
                c.process,
                c.processes
            );
        }
        Ok((c, given))
    }

    /// The processes' addresses: the hostfile's first `processes` lines, or 127.0.0.1 ports.
    pub fn addresses(&self) -> Result<Vec<String>> {
        let Some(path) = &self.hostfile else {
            return Ok((0..self.processes)
                .map(|i| format!("127.0.0.1:{}", 2101 + i))
                .collect());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the hostfile", path.display()))?;
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.to_socket_addrs().is_err() && !line.contains(':') {
                bail!("{}:{}: '{line}' is not host:port", path.display(), n + 1);
            }
            out.push(line.to_string());
        }
        if out.len() < self.processes {
            bail!(
                "{}: {} addresses for -n {} processes (one host:port per line)",
                path.display(),
                out.len(),
                self.processes
            );
        }
        out.truncate(self.processes);
        Ok(out)
    }

    fn config(&self) -> Result<timely::Config> {
        let communication = if self.processes > 1 {
            timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses: self.addresses()?,
                report: false,
                zerocopy: false,
            }
        } else if self.workers > 1 {
            timely::CommunicationConfig::Process(self.workers)
        } else {
            timely::CommunicationConfig::Thread
        };
        Ok(timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        })
    }

    /// Is this the process whose worker 0 writes the results?
    pub fn is_writer(&self) -> bool {
        self.process == 0
    }

    /// Runs `func` on every local worker and returns their results (in worker order). When
    /// the other processes do not all connect within the timeout, says which addresses
    /// do not answer instead of waiting for ever.
    pub fn execute<T, F>(&self, func: F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(&mut Worker) -> T + Send + Sync + 'static,
    {
        let config = self.config()?;
        let (connected_tx, connected) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("timely".into())
            .spawn(move || {
                let guards = match timely::execute(config, func) {
                    Ok(g) => g,
                    Err(e) => {
                        let _ = connected_tx.send(Err(e));
                        return;
                    }
                };
                let _ = connected_tx.send(Ok(()));
                let results: Vec<std::result::Result<T, String>> = guards.join();
                let _ = done_tx.send(results);
            })
            .context("cannot start the worker threads")?;
        match connected.recv_timeout(self.connect_timeout) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("cannot start the computation: {e}"),
            Err(_) => bail!("{}", self.unreachable()?),
        }
        let results = done.recv().context("a worker thread died")?;
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.map_err(|e| anyhow::anyhow!("worker {i} failed: {e}")))
            .collect()
    }

    /// Why connecting timed out: which peers do not accept connections.
    fn unreachable(&self) -> Result<String> {
        let addresses = self.addresses()?;
        let silent: Vec<String> = addresses
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.process)
            .filter(|(_, a)| {
                !a.to_socket_addrs()
                    .ok()
                    .and_then(|mut s| s.next())
                    .is_some_and(|s| TcpStream::connect_timeout(&s, Duration::from_secs(2)).is_ok())
            })
            .map(|(i, a)| format!("process {i} at {a}"))
            .collect();
        let who = if silent.is_empty() {
            "every peer answers, but not all joined (is each started with the same -n and hostfile, and its own -p?)".to_string()
        } else {
            format!("no answer from {}", silent.join(", "))
        };
        Ok(format!(
            "process {} of {}: the cluster did not connect within {} s: {who}",
            self.process,
            self.processes,
            self.connect_timeout.as_secs()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn cluster_flags_are_taken_out_and_help_stays() {
        let mut a = args("cortexflow ingest S -w 2 -n 3 -p 1 -h hosts.txt --bold x");
        let (c, given) = Cluster::extract(&mut a).unwrap();
        assert!(given);
        assert_eq!((c.workers, c.processes, c.process), (2, 3, 1));
        assert_eq!(c.hostfile, Some(PathBuf::from("hosts.txt")));
        assert_eq!(a, args("cortexflow ingest S --bold x"));
        let mut a = args("cortexflow ingest -h");
        let (_, given) = Cluster::extract(&mut a).unwrap();
        assert!(!given);
        assert_eq!(a, args("cortexflow ingest -h"));
        assert!(Cluster::extract(&mut args("x -p 2 -n 2")).is_err());
        assert!(Cluster::extract(&mut args("x -w zero")).is_err());
    }
}
