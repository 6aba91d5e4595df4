//! The processes of a run: one Redis and up to three herald instances, all children of this
//! process (so `scripts/chaos.sh`'s timeout, which signals the whole process group, ends them too).
//!
//! Redis is started in the foreground (`--daemonize no`) on a free loopback port, either with an
//! append-only file (the default: a restart keeps history and dedupe marks, as a deployment that
//! relies on history must configure it) or with no persistence at all (a restart really loses its
//! state). Signals other than SIGKILL are sent with the `kill` utility (the workspace forbids the
//! `unsafe` a direct `kill(2)` would need).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::balancer;
use crate::options::Persistence;

/// How herald instances are started.
pub(crate) struct HeraldSetup {
    pub binary: PathBuf,
    /// Every flag but `--listen`.
    pub args: Vec<String>,
    /// `RUST_LOG` for herald.
    pub log_level: String,
}

pub(crate) struct Cluster {
    out: PathBuf,
    redis_binary: PathBuf,
    redis_persistence: Persistence,
    pub redis_port: u16,
    redis: Option<Child>,
    herald: HeraldSetup,
    pub herald_ports: Vec<u16>,
    heralds: Vec<Option<Child>>,
    /// Instances that ended without being told to, with their status.
    pub unexpected_exits: Vec<(usize, String)>,
    /// How often each instance was started again after it ended by itself.
    restarts: Vec<usize>,
}

/// A free port on 127.0.0.1 (free when asked; nothing else on this machine is expected to race for
/// it), below Linux's ephemeral range (32768-60999). Redis and herald instances are stopped and
/// started again on their ports while clients retry them; in that range a port can be taken
/// meanwhile as the source of an outgoing connection, even of one to that very port (a socket
/// connected to itself), and the server could not listen again.
pub(crate) fn free_port() -> Result<u16, String> {
    const FIRST: u16 = 20_000;
    const COUNT: u16 = 6_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Each process starts elsewhere in the range, so runs at once rarely try one port.
    let start = std::process::id();
    (0..COUNT)
        .map(|_| FIRST + (start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % u32::from(COUNT)) as u16)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .ok_or_else(|| "cannot find a free port in 20000-25999".to_owned())
}

/// Sends `signal` (a name such as `STOP`) to `pid`.
fn signal(pid: u32, signal: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .map_err(|error| format!("cannot run kill -{signal} {pid}: {error}"))?;
    if status.success() { Ok(()) } else { Err(format!("kill -{signal} {pid} failed: {status}")) }
}

/// Waits up to `limit` for `child` to end.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => return None,
        }
    }
}

/// Asks `child` to stop with SIGTERM, then kills it after `grace`.
fn stop(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = signal(child.id(), "CONT");
    let _ = signal(child.id(), "TERM");
    wait_exit(child, grace).or_else(|| {
        let _ = child.kill();
        child.wait().ok()
    })
}

fn log_file(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| format!("cannot open {}: {error}", path.display()))
}

impl Cluster {
    pub(crate) fn new(
        out: &Path,
        redis_binary: PathBuf,
        redis_persistence: Persistence,
        redis_port: u16,
        herald: HeraldSetup,
        instances: usize,
    ) -> Result<Cluster, String> {
        Ok(Cluster {
            out: out.to_owned(),
            redis_binary,
            redis_persistence,
            redis_port,
            redis: None,
            herald,
            herald_ports: (0..instances).map(|_| free_port()).collect::<Result<_, _>>()?,
            heralds: (0..instances).map(|_| None).collect(),
            unexpected_exits: Vec::new(),
            restarts: vec![0; instances],
        })
    }

    /// Starts Redis and waits until it answers PING.
    pub(crate) fn start_redis(&mut self) -> Result<(), String> {
        let log = log_file(&self.out.join("redis.log"))?;
        // No RDB snapshots either way: with the append-only file, every write is logged (fsync every
        // second, and in full on SIGTERM), which is what keeps history across a restart.
        let appendonly = match self.redis_persistence {
            Persistence::Aof => ["--appendonly", "yes", "--appendfsync", "everysec"],
            Persistence::None => ["--appendonly", "no", "--appendfsync", "everysec"],
        };
        let child = Command::new(&self.redis_binary)
            .args(["--port", &self.redis_port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(appendonly)
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(&self.out)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|error| error.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", self.redis_binary.display()))?;
        self.redis = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.redis_answers() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "Redis on port {} did not answer PING within 20 s; see {}",
                    self.redis_port,
                    self.out.join("redis.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Whether Redis answers PING within a second.
    fn redis_answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.redis_port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    /// Stops Redis (SIGTERM: with the append-only file it flushes it; without, it saves nothing)
    /// and starts it again on the same port (from that file, or empty).
    pub(crate) fn restart_redis(&mut self) -> Result<(), String> {
        if let Some(mut redis) = self.redis.take() {
            stop(&mut redis, Duration::from_secs(10));
        }
        self.start_redis()
    }

    pub(crate) fn redis_persistence(&self) -> Persistence {
        self.redis_persistence
    }

    fn redis_pid(&self) -> Result<u32, String> {
        self.redis.as_ref().map(Child::id).ok_or_else(|| "Redis is not running".to_owned())
    }

    pub(crate) fn pause_redis(&self) -> Result<(), String> {
        signal(self.redis_pid()?, "STOP")
    }

    pub(crate) fn resume_redis(&self) -> Result<(), String> {
        signal(self.redis_pid()?, "CONT")
    }

    pub(crate) fn herald_pid(&self, instance: usize) -> Option<u32> {
        self.heralds[instance].as_ref().map(Child::id)
    }

    /// Starts herald instance `instance` on its port (appending to `herald-{instance}.log`).
    pub(crate) fn start_herald(&mut self, instance: usize, note: &str) -> Result<(), String> {
        let path = self.out.join(format!("herald-{instance}.log"));
        let mut log = log_file(&path)?;
        let _ = writeln!(log, "==== herald-chaos: {note}");
        let child = Command::new(&self.herald.binary)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.herald_ports[instance]))
            .args(&self.herald.args)
            .env("RUST_LOG", &self.herald.log_level)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|error| error.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", self.herald.binary.display()))?;
        self.heralds[instance] = Some(child);
        Ok(())
    }

    /// Waits until instance `instance` answers `/readyz` with 200; fails if it exits or `limit`
    /// passes.
    pub(crate) async fn wait_ready(&mut self, instance: usize, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if balancer::ready(self.herald_ports[instance]).await {
                return Ok(());
            }
            if let Some(child) = &mut self.heralds[instance]
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "herald-{instance} exited during start-up ({status}); see {}",
                    self.out.join(format!("herald-{instance}.log")).display()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "herald-{instance} was not ready within {} s; see {}",
                    limit.as_secs(),
                    self.out.join(format!("herald-{instance}.log")).display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILLs instance `instance`.
    pub(crate) fn kill_herald(&mut self, instance: usize) -> Result<(), String> {
        let mut child = self.heralds[instance].take().ok_or_else(|| format!("herald-{instance} is not running"))?;
        self.note_exit(instance, &mut child);
        child.kill().map_err(|error| format!("cannot kill herald-{instance}: {error}"))?;
        let _ = child.wait();
        Ok(())
    }

    /// Records an instance that ended by itself before being stopped.
    fn note_exit(&mut self, instance: usize, child: &mut Child) {
        if let Ok(Some(status)) = child.try_wait() {
            self.unexpected_exits.push((instance, status.to_string()));
        }
    }

    /// Starts again, as an orchestrator would, every instance that ended by itself (herald ends
    /// the process when a task it needs has stopped); returns which.
    pub(crate) fn restart_exited(&mut self) -> Result<Vec<usize>, String> {
        self.check_exits();
        let mut restarted = Vec::new();
        for instance in 0..self.heralds.len() {
            let ended = self.unexpected_exits.iter().filter(|(exited, _)| *exited == instance).count();
            let restarts = self.restarts.get(instance).copied().unwrap_or(0);
            if self.heralds[instance].is_none() && ended > restarts {
                self.start_herald(instance, "restarted after it ended by itself")?;
                self.restarts[instance] = restarts + 1;
                restarted.push(instance);
            }
        }
        Ok(restarted)
    }

    /// Notes instances that ended by themselves so far.
    pub(crate) fn check_exits(&mut self) {
        for instance in 0..self.heralds.len() {
            if let Some(mut child) = self.heralds[instance].take() {
                match child.try_wait() {
                    Ok(Some(status)) => self.unexpected_exits.push((instance, status.to_string())),
                    _ => self.heralds[instance] = Some(child),
                }
            }
        }
    }

    /// Stops every herald (SIGTERM, SIGKILL after 15 s) and then Redis. Returns how each herald
    /// instance ended.
    pub(crate) fn shut_down(&mut self) -> Vec<(usize, String)> {
        self.check_exits();
        let mut ended = Vec::new();
        for (instance, slot) in self.heralds.iter_mut().enumerate() {
            if let Some(mut child) = slot.take() {
                let _ = signal(child.id(), "TERM");
                let status = wait_exit(&mut child, Duration::from_secs(15)).map_or_else(
                    || {
                        let _ = child.kill();
                        let _ = child.wait();
                        "did not stop within 15 s of SIGTERM; killed".to_owned()
                    },
                    |status| status.to_string(),
                );
                ended.push((instance, status));
            }
        }
        if let Some(mut redis) = self.redis.take() {
            stop(&mut redis, Duration::from_secs(10));
        }
        ended
    }

    /// The first line of each distinct panic in the herald logs.
    pub(crate) fn panics(&self) -> Vec<String> {
        let mut panics = Vec::new();
        for instance in 0..self.heralds.len() {
            let path = self.out.join(format!("herald-{instance}.log"));
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let lines: Vec<&str> = text.lines().collect();
            for (index, line) in lines.iter().enumerate().filter(|(_, line)| line.contains("panicked at")) {
                // The message follows on the next line and may quote producer text at length (and
                // not in ASCII): keep it short.
                let message = lines.get(index + 1).map_or("", |message| message.trim());
                let line: String = format!("herald-{instance}: {} {message}", line.trim()).chars().take(240).collect();
                if !panics.contains(&line) {
                    panics.push(line);
                }
            }
        }
        panics
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.heralds.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(redis) = &mut self.redis {
            let _ = redis.kill();
            let _ = redis.wait();
        }
    }
}
