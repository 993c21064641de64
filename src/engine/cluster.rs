//! Workers and processes: timely's own cluster options (the command line's `ClusterArgs`).
//!
//! `-w N` worker threads per process, `-n N` processes, `-p I` this process's index,
//! `-h FILE` hostfile (one `host:port` per line, the process with index i listening on
//! line i+1). Without `-h`, processes listen on 127.0.0.1:2101+i. Every process runs the
//! same command on the same store; inputs are sharded by position over all workers, and
//! worker 0 (of process 0) is the one writer of results.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{err, bail, Context, Result};
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
    /// The memory this process may use for an update, in bytes (see [`super::budget`]).
    pub memory_limit: u64,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            workers: 1,
            processes: 1,
            process: 0,
            hostfile: None,
            connect_timeout: Duration::from_secs(60),
            memory_limit: super::budget::default_limit(),
        }
    }
}

impl Cluster {
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
        let results = done
            .recv()
            .map_err(|_| err!("a worker thread died"))?;
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.map_err(|e| err!("worker {i} failed: {e}")))
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
