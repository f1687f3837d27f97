//! The one door to the outside world: every command `mugge setup` runs (useradd, loginctl,
//! systemctl, wpctl, pactl, ...) goes through [`CommandRunner`], so gate logic is tested against
//! recorded output and actions against a fake system.

use std::fmt;
use std::process::Command;

/// A command line, program plus arguments, never through a shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
}

impl Cmd {
    pub fn new<I, S>(program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            program: program.to_string(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// Runs `argv` inside the audio user's systemd user manager, with that manager's environment
    /// as it is: the same place mugge's own units run, so what passes here holds for them.
    pub fn in_user_session(user: &str, argv: &[&str]) -> Self {
        let machine = format!("{user}@");
        let mut args = vec![
            "--user",
            "-M",
            machine.as_str(),
            "--wait",
            "--pipe",
            "--quiet",
            "--collect",
            "--",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(argv.iter().map(|a| a.to_string()));
        Self {
            program: "systemd-run".into(),
            args,
        }
    }

    /// `systemctl --user -M <user>@ <args>`: the audio user's manager, addressed from root.
    pub fn user_systemctl(user: &str, argv: &[&str]) -> Self {
        let mut args = vec!["--user".to_string(), "-M".into(), format!("{user}@")];
        args.extend(argv.iter().map(|a| a.to_string()));
        Self {
            program: "systemctl".into(),
            args,
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for a in &self.args {
            f.write_str(" ")?;
            f.write_str(a)?;
        }
        Ok(())
    }
}

/// What a command left behind. `code` is `None` when it was killed by a signal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CmdOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    #[cfg(test)]
    pub fn ok(stdout: &str) -> Self {
        Self {
            code: Some(0),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    #[cfg(test)]
    pub fn failed(code: i32, stderr: &str) -> Self {
        Self {
            code: Some(code),
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The first line of stdout, trimmed (most query commands answer in one line).
    pub fn line(&self) -> &str {
        self.stdout.lines().next().unwrap_or("").trim()
    }
}

pub trait CommandRunner {
    /// Runs the command to completion. `Err` only when it could not be started at all.
    fn run(&self, cmd: &Cmd) -> std::io::Result<CmdOutput>;
}

/// Runs commands on the real system.
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run(&self, cmd: &Cmd) -> std::io::Result<CmdOutput> {
        let out = Command::new(&cmd.program).args(&cmd.args).output()?;
        Ok(CmdOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Runs a command and turns "could not start" and "non-zero exit" into one error message.
pub fn run_checked(runner: &dyn CommandRunner, cmd: &Cmd) -> Result<CmdOutput, String> {
    match runner.run(cmd) {
        Ok(out) if out.success() => Ok(out),
        Ok(out) => Err(format!(
            "`{cmd}` exited with {}: {}",
            out.code.map_or("a signal".to_string(), |c| c.to_string()),
            out.stderr.trim()
        )),
        Err(e) => Err(format!("`{cmd}` could not be started: {e}")),
    }
}
