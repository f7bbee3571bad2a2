//! Peak resident memory of a child process, sampled from /proc until it exits.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one measured run gave.
pub struct Measured {
    /// Peak resident set (VmHWM), kB.
    pub peak_kb: u64,
    pub elapsed: Duration,
    pub stdout: String,
    pub status: std::process::ExitStatus,
}

/// Runs `command` to its end, sampling its VmHWM every 25 ms.
pub fn measure(mut command: Command) -> Measured {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the measured command");
    // Drained on a thread so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).expect("read stdout");
        text
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let elapsed = started.elapsed();
    let stdout = reader.join().expect("stdout reader");
    Measured {
        peak_kb,
        elapsed,
        stdout,
        status,
    }
}
