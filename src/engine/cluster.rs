//! Workers and processes: timely's own cluster options (the command line's `ClusterArgs`).
//!
//! `-w N` worker threads per process, `-n N` processes, `-p I` this process's index,
//! `-h FILE` hostfile (one `host:port` per line, the process with index i listening on
//! line i+1). Without `-h`, processes listen on 127.0.0.1:2101+i. Every process runs the
//! same command on the same store; inputs are sharded by position over all workers, and
//! worker 0 (of process 0) is the one writer of results. With `--local-inputs`, each
//! process has its own inputs and only process 0 the store ([`super::local_inputs`]).

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
    /// No shared file system: each process holds only its own inputs, process 0 alone
    /// holds the store (see [`super::local_inputs`]).
    pub local_inputs: bool,
    /// The command as every process must have been given it (e.g. `retract --run
    /// sub-01/task-lpp/run-1`); empty: not compared.
    pub command: String,
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
            local_inputs: false,
            command: String::new(),
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

    /// Workers that keep this machine's cores busy without oversubscribing them: its cores
    /// shared among the processes of the cluster that run on its host (every one without a
    /// hostfile; those whose line names this process's host with one), at least 1.
    pub fn workers_for_cores(&self) -> Result<usize> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.processes <= 1 {
            return Ok(cores);
        }
        let addresses = self.addresses()?;
        let host = |a: &str| a.rsplit_once(':').map_or(a, |(h, _)| h).to_string();
        let mine = addresses.get(self.process).map(|a| host(a));
        let here = addresses.iter().filter(|a| Some(host(a)) == mine).count().max(1);
        Ok((cores / here).max(1))
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

    /// This cluster running `command`, which every process must have been given alike.
    pub fn running(mut self, command: impl Into<String>) -> Cluster {
        self.command = command.into();
        self
    }

    /// Whether every process can read every run (a shared file system, or one process).
    pub fn reads_every_run(&self) -> bool {
        !self.local_inputs || self.processes == 1
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
        if self.processes > 1 {
            lost_peer::watch();
        }
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
        // A peer lost mid-computation makes timely's network threads panic, and the
        // workers after them; the hook keeps those panics quiet and says which peer it was,
        // and this process stops at once (its stuck threads end with it).
        let results = loop {
            let received = done.recv_timeout(Duration::from_millis(100));
            if let Some(lost) = lost_peer::take() {
                if self.local_inputs {
                    super::local_inputs::remove_own_copies();
                }
                bail!("{}", self.lost(lost)?);
            }
            match received {
                Ok(results) => break results,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("a worker thread died"),
            }
        };
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.map_err(|e| err!("worker {i} failed: {e}")))
            .collect()
    }

    /// The line for a peer lost mid-computation.
    fn lost(&self, (peer, why): (usize, String)) -> Result<String> {
        let address = self.addresses()?.get(peer).cloned().unwrap_or_else(|| "an unknown address".into());
        // Timely's network threads index their peers' workers by this process's -w: another
        // process's other -w shows as an index out of bounds there.
        let check = match why.contains("index out of bounds") {
            true => " (was every process given the same -w and -n?)",
            false => "",
        };
        Ok(format!(
            "process {} of {}: lost process {peer} at {address} ({why}){check}; stopped. The store keeps what was finished: run the same command again to resume",
            self.process, self.processes
        ))
    }

    /// Why connecting timed out: which peers do not accept connections.
    fn unreachable(&self) -> Result<String> {
        let addresses = self.addresses()?;
        let silent: Vec<String> = addresses
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.process)
            .filter(|(_, a)| {
                a.to_socket_addrs()
                    .ok()
                    .and_then(|mut s| s.next())
                    .is_none_or(|s| TcpStream::connect_timeout(&s, Duration::from_secs(2)).is_err())
            })
            .map(|(i, a)| format!("process {i} at {a}"))
            .collect();
        let who = if silent.is_empty() {
            "every peer answers, but not all joined (is each started with the same -n and hostfile, and its own -p?)".to_string()
        } else {
            format!(
                "no answer from {}: is it started, with the same -n, -w and hostfile? (A process that stopped on an error of its own before connecting says so in its output.)",
                silent.join(", ")
            )
        };
        Ok(format!(
            "process {} of {}: the cluster did not connect within {} s: {who}",
            self.process,
            self.processes,
            self.connect_timeout.as_secs()
        ))
    }
}

/// Which peer process was lost, told by the panics of timely's network threads (named
/// `timely:recv-I` / `timely:send-I` for peer I, their message starting with "timely
/// communication error"). Once one is lost, the panics that cascade from it (workers
/// finding the connection gone) are kept quiet too; any other panic is reported as usual.
mod lost_peer {
    use std::sync::{Mutex, Once};

    static LOST: Mutex<Option<(usize, String)>> = Mutex::new(None);
    static HOOK: Once = Once::new();

    /// Installs the hook (once per process) and forgets any earlier loss.
    pub fn watch() {
        *LOST.lock().unwrap_or_else(|e| e.into_inner()) = None;
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let peer = std::thread::current()
                    .name()
                    .and_then(|n| n.strip_prefix("timely:recv-").or_else(|| n.strip_prefix("timely:send-")))
                    .and_then(|i| i.parse::<usize>().ok());
                let message = crate::error::panic_text(info.payload()).unwrap_or("a network thread failed");
                let mut lost = LOST.lock().unwrap_or_else(|e| e.into_inner());
                match (peer, lost.is_some()) {
                    (Some(p), false) => *lost = Some((p, message.trim_start_matches("timely communication error: ").to_string())),
                    (Some(_), true) | (None, true) => {}
                    (None, false) => {
                        drop(lost);
                        previous(info);
                    }
                }
            }));
        });
    }

    /// The lost peer and why, if one was lost.
    pub fn take() -> Option<(usize, String)> {
        LOST.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Every worker's error text, if any worker has one (collective), with its process: the
/// first that is a cause rather than a consequence ("stopped: …").
pub fn first_error(worker: &mut Worker, mine: Option<String>, workers: usize) -> Option<(usize, String)> {
    let said = crate::operators::share(worker, mine.into_iter().collect());
    said.into_iter().min_by_key(|(_, text)| text.starts_with("stopped:")).map(|(w, text)| (w / workers.max(1), text))
}

/// `result` if every worker's went well (collective). Otherwise this worker's own error,
/// or another's in its words (`stopped: process P {what}: …`): a process that fails alone
/// must not leave the others (process 0's user above all) with only "see its error".
pub fn agree_or_say<T>(worker: &mut Worker, result: Result<T>, workers: usize, what: &str) -> Result<T> {
    let text = result.as_ref().err().map(|e| e.to_string());
    match (result, first_error(worker, text, workers)) {
        (Ok(value), None) => Ok(value),
        (Err(e), _) => Err(e),
        (Ok(_), Some((_, text))) if text.starts_with("stopped:") => Err(err!("{text}")),
        (Ok(_), Some((process, text))) => Err(err!("stopped: process {process} {what}: {text}")),
    }
}

/// The workers' results, or the first worker's own error: before the "stopped: …" of
/// those that stopped because of it.
pub fn all_ok<T>(results: Vec<Result<T>>) -> Result<Vec<T>> {
    let (failed, done): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_err);
    if let Some(e) = failed.into_iter().filter_map(Result::err).min_by_key(|e| e.to_string().starts_with("stopped:")) {
        return Err(e);
    }
    Ok(done.into_iter().filter_map(Result::ok).collect())
}
