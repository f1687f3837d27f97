//! Child processes that cannot outlive the test that started them.
//!
//! Every daemon is started through `setpriv --pdeathsig KILL`, so the kernel kills it when the
//! test process dies, even by SIGKILL, when no destructor runs. A normal end or a panic drops the
//! guard, which kills and reaps the child by its PID.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running child process, killed and reaped on drop.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Starts `cmd` so that it dies with this process; its output goes to `log`.
    pub fn spawn(name: &str, cmd: &Command, log: &Path) -> Result<ChildGuard> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut wrapped = with_parent_death_signal(cmd);
        wrapped.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = wrapped
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(ChildGuard {
            name: name.to_owned(),
            child: Some(child),
        })
    }

    /// Wraps an already spawned child (e.g. one whose stdout the caller reads).
    pub fn adopt(name: &str, child: Child) -> ChildGuard {
        ChildGuard {
            name: name.to_owned(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills (SIGKILL) and reaps the process now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Gives the process back without killing it (the caller takes over).
    pub fn into_inner(mut self) -> Option<Child> {
        self.child.take()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `cmd` re-targeted through `setpriv --pdeathsig KILL --`, keeping its environment and cwd.
pub fn with_parent_death_signal(cmd: &Command) -> Command {
    let mut wrapped = Command::new("setpriv");
    wrapped
        .arg("--pdeathsig")
        .arg("KILL")
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}
