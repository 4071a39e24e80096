//! ffmpeg and ffprobe as subprocesses (modelled on pict-rs's `process.rs`): a timeout, the child
//! killed when the future is dropped or times out, stderr captured (its tail kept for the
//! error), and one typed error.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{program} is not installed (looked for {path}; set media.ffmpeg / media.ffprobe if it is elsewhere)")]
    Missing { program: String, path: String },
    #[error("{program} could not start: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} did not finish within {seconds} s and was stopped")]
    Timeout { program: String, seconds: u64 },
    #[error("{program} failed ({status}): {stderr}")]
    Failed { program: String, status: String, stderr: String },
    /// Killed from outside (SIGKILL: the out-of-memory killer; SIGTERM: an operator), not
    /// by its own verdict on the input.
    #[error("{program} was killed ({status})")]
    Killed { program: String, status: String },
    #[error("{program}: reading its input or output failed: {source}")]
    Io { program: String, source: std::io::Error },
}

/// Where the tools are (`ffmpeg`/`ffprobe` on PATH unless configured).
#[derive(Clone, Debug)]
pub struct Tools {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
}

impl Tools {
    /// The programs `media.ffmpeg` / `media.ffprobe` name.
    pub fn from_config(config: &crate::config::Config) -> Tools {
        Tools { ffmpeg: config.media.ffmpeg.clone(), ffprobe: config.media.ffprobe.clone() }
    }
}

impl Default for Tools {
    fn default() -> Self {
        Tools { ffmpeg: "ffmpeg".into(), ffprobe: "ffprobe".into() }
    }
}

/// Keep this much of stderr (its end: ffmpeg says what went wrong last).
const STDERR_TAIL: usize = 4096;

/// What a finished program wrote.
#[derive(Debug)]
pub struct Output {
    pub stdout: Vec<u8>,
    /// The end of what it wrote to stderr.
    pub stderr: String,
}

/// Run `program` with `args`; its stdout on success. Stdout is bounded by `max_stdout`.
pub async fn run<I, S>(program: &Path, args: I, timeout: Duration, max_stdout: usize) -> Result<Vec<u8>, ProcessError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Ok(run_output(program, args, timeout, max_stdout).await?.stdout)
}

/// As [`run`], with stderr's tail too (ffmpeg reports damaged input there and may still exit 0).
pub async fn run_output<I, S>(
    program: &Path,
    args: I,
    timeout: Duration,
    max_stdout: usize,
) -> Result<Output, ProcessError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                ProcessError::Missing { program: name.clone(), path: program.display().to_string() }
            }
            _ => ProcessError::Spawn { program: name.clone(), source: e },
        })?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let work = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = stdout.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                if out.len() < max_stdout {
                    out.extend_from_slice(&buf[..n.min(max_stdout - out.len())]);
                }
            }
        };
        let read_err = async {
            let mut buf = [0u8; 8 * 1024];
            loop {
                let n = stderr.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                err.extend_from_slice(&buf[..n]);
                if err.len() > 4 * STDERR_TAIL {
                    err.drain(..err.len() - STDERR_TAIL);
                }
            }
        };
        let (a, b) = tokio::join!(read_out, read_err);
        a.and(b).map_err(|e| ProcessError::Io { program: name.clone(), source: e })?;
        let status = child.wait().await.map_err(|e| ProcessError::Io { program: name.clone(), source: e })?;
        Ok::<_, ProcessError>((status, out, err))
    };
    let (status, out, err) = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r?,
        // Dropping `work` drops the child: kill_on_drop stops it.
        Err(_) => return Err(ProcessError::Timeout { program: name, seconds: timeout.as_secs() }),
    };
    let tail = String::from_utf8_lossy(&err[err.len().saturating_sub(STDERR_TAIL)..]).trim().to_string();
    // Killed from outside (the out-of-memory killer, an operator, a shutdown) says nothing about
    // the input; a crash (SIGSEGV, an assertion's SIGABRT) does: it is the input's `Failed`.
    {
        use std::os::unix::process::ExitStatusExt;
        // ffmpeg catches SIGTERM/SIGINT, stops early and exits 255 ("received a signal").
        if matches!(status.signal(), Some(9 | 15)) || status.code() == Some(255) {
            return Err(ProcessError::Killed { program: name, status: status.to_string() });
        }
    }
    if !status.success() {
        return Err(ProcessError::Failed { program: name, status: status.to_string(), stderr: tail });
    }
    Ok(Output { stdout: out, stderr: tail })
}

/// Whether ffmpeg and ffprobe run here (`-version`).
pub async fn available(tools: &Tools) -> Result<(), ProcessError> {
    for p in [&tools.ffmpeg, &tools.ffprobe] {
        run(p, ["-version"], Duration::from_secs(10), 4096).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_failures_timeouts_and_missing_programs() {
        let sh = Path::new("/bin/sh");
        let out = run(sh, ["-c", "printf hello; printf noise >&2"], Duration::from_secs(5), 1024).await.unwrap();
        assert_eq!(out, b"hello");
        let bounded = run(sh, ["-c", "printf 0123456789"], Duration::from_secs(5), 4).await.unwrap();
        assert_eq!(bounded, b"0123");
        match run(sh, ["-c", "echo broken input >&2; exit 3"], Duration::from_secs(5), 1024).await {
            Err(ProcessError::Failed { stderr, status, .. }) => {
                assert_eq!(stderr, "broken input");
                assert!(status.contains('3'), "{status}");
            }
            other => panic!("{other:?}"),
        }
        let r = run(sh, ["-c", "kill -9 $$"], Duration::from_secs(5), 1024).await;
        assert!(matches!(r, Err(ProcessError::Killed { .. })), "killed from outside: not the input's fault: {r:?}");
        let r = run(sh, ["-c", "exit 255"], Duration::from_secs(5), 1024).await;
        assert!(matches!(r, Err(ProcessError::Killed { .. })), "ffmpeg's exit after SIGTERM: {r:?}");
        let r = run(sh, ["-c", "kill -SEGV $$"], Duration::from_secs(5), 1024).await;
        assert!(matches!(r, Err(ProcessError::Failed { .. })), "a crash is the input's: {r:?}");
        let pidfile = std::env::temp_dir().join(format!("tsunagu-process-test-{}", std::process::id()));
        let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
        let r = run(sh, ["-c", script.as_str()], Duration::from_millis(300), 1024).await;
        assert!(matches!(r, Err(ProcessError::Timeout { .. })), "{r:?}");
        // The child was killed, not left running: gone, or a zombie waiting to be reaped.
        let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
        let _ = std::fs::remove_file(&pidfile);
        let mut alive = true;
        for _ in 0..100 {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            alive = state.split(") ").nth(1).is_some_and(|rest| !rest.starts_with('Z'));
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive, "the timed-out child was killed");
        let r = run(Path::new("/nonexistent/ffmpeg"), ["-version"], Duration::from_secs(5), 1024).await;
        assert!(matches!(r, Err(ProcessError::Missing { ref program, .. }) if program == "ffmpeg"), "{r:?}");
    }
}
