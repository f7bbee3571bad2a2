//! A real single-node Slurm (Debian's slurmctld + slurmd 22.05) for the tests: started in a
//! temporary folder with its own slurm.conf, state, spool, logs and ports, and stopped with
//! nothing left running (also from `Drop`, so a failing test leaves no daemon or job behind).
//!
//! It runs as root with `auth/none` (no munge, no systemd, no cgroups). `tools/test` installs
//! the packages; without them [`Slurm::start`] panics saying so, unless `BOOMERANG_SKIP_SLURM=1`,
//! when it prints why and returns `None` (the test then passes without running).

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the daemons may take to answer and the node to become idle.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Fake GPUs the node offers (`Gres=gpu:N`, no device files), so job scripts that ask for
/// `--gres=gpu:1` are scheduled here as on a GPU cluster.
pub const FAKE_GPUS: u32 = 4;

pub struct Slurm {
    dir: tempfile::TempDir,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
    stopped: bool,
}

/// The Slurm programs the harness runs.
const PROGRAMS: [&str; 6] = [
    "slurmctld",
    "slurmd",
    "sbatch",
    "scontrol",
    "scancel",
    "sinfo",
];

/// PATH with the sbin folders the daemons are installed in (a root shell may lack them).
fn path() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    for extra in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        if !dirs.iter().any(|d| d == Path::new(extra)) {
            dirs.push(extra.into());
        }
    }
    std::env::join_paths(dirs).unwrap()
}

fn installed(program: &str) -> bool {
    std::env::split_paths(&path()).any(|dir| dir.join(program).is_file())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A TCP port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

impl Slurm {
    /// Starts slurmctld and slurmd and waits until the node is idle; `None` (after printing
    /// why) when Slurm is missing and `BOOMERANG_SKIP_SLURM=1`.
    pub fn start() -> Option<Slurm> {
        let missing: Vec<_> = PROGRAMS.iter().filter(|p| !installed(p)).collect();
        let skip = std::env::var("BOOMERANG_SKIP_SLURM").is_ok_and(|v| v == "1");
        if !missing.is_empty() || !is_root() {
            let why = if missing.is_empty() {
                "the Slurm tests run slurmctld/slurmd as root (SlurmUser=root); run them as root"
                    .to_string()
            } else {
                format!(
                    "Slurm is not installed ({} missing): run tools/test, which installs it as \
                     root (apt-get install slurmctld slurmd slurm-client munge)",
                    missing
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            if skip {
                eprintln!("skipping the Slurm test (BOOMERANG_SKIP_SLURM=1): {why}");
                return None;
            }
            panic!("{why}; or set BOOMERANG_SKIP_SLURM=1 to skip the Slurm tests");
        }
        let dir = tempfile::Builder::new()
            .prefix("boomerang-slurm-")
            .tempdir()
            .unwrap();
        let mut slurm = Slurm {
            conf: dir.path().join("slurm.conf"),
            dir,
            daemons: Vec::new(),
            stopped: false,
        };
        slurm.configure();
        slurm.spawn("slurmctld", &["-D", "-i"]);
        slurm.spawn("slurmd", &["-D"]);
        slurm.wait_until_idle();
        Some(slurm)
    }

    /// The temporary folder everything lives in (also a place for the tests' jobs and files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pids of slurmctld and slurmd.
    pub fn daemon_pids(&self) -> Vec<i32> {
        self.daemons.iter().map(|(_, c)| c.id() as i32).collect()
    }

    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// Writes slurm.conf (and gres.conf) for this host: its short name, CPUs and memory as
    /// `slurmd -C` reports them, and two free ports.
    fn configure(&self) {
        let dir = self.dir();
        for sub in ["state", "spool", "log", "jobs"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let probe = self.command("slurmd").arg("-C").output().unwrap();
        assert!(probe.status.success(), "slurmd -C: {}", text(&probe));
        let probe = String::from_utf8_lossy(&probe.stdout).into_owned();
        let field = |name: &str| {
            probe
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("slurmd -C has no {name}: {probe}"))
                .to_string()
        };
        let (host, cpus, memory) = (field("NodeName"), field("CPUs"), field("RealMemory"));
        // Fake GPUs: device nodes like /dev/null, named as NVIDIA's (regular files when
        // mknod is not allowed: slurmd then complains but counts them).
        std::fs::create_dir_all(dir.join("dev")).unwrap();
        for gpu in 0..FAKE_GPUS {
            let node = dir.join(format!("dev/nvidia{gpu}"));
            let made = self
                .command("mknod")
                .arg(&node)
                .args(["c", "1", "3"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !made {
                File::create(&node).unwrap();
            }
        }
        let d = dir.display();
        let conf = format!(
            "ClusterName=boomerang-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/none
CredType=cred/none
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MailProg=/bin/true
SchedulerParameters=sched_interval=1
MinJobAge=3600
ReturnToService=2
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} Gres=gpu:{FAKE_GPUS} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
",
            ctld_port = free_port(),
            slurmd_port = free_port(),
        );
        std::fs::write(&self.conf, conf).unwrap();
        std::fs::write(
            dir.join("gres.conf"),
            format!(
                "NodeName={host} Name=gpu File={d}/dev/nvidia[0-{}]\n",
                FAKE_GPUS - 1
            ),
        )
        .unwrap();
    }

    /// `program` with `SLURM_CONF` pointing at this cluster's slurm.conf.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf).env("PATH", path());
        command
    }

    fn spawn(&mut self, daemon: &'static str, args: &[&str]) {
        let log = |stream| File::create(self.dir().join(format!("log/{daemon}.{stream}"))).unwrap();
        let child = self
            .command(daemon)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log("stdout"))
            .stderr(log("stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {daemon}: {e}"));
        self.daemons.push((daemon, child));
    }

    /// The daemons' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for name in [
            "slurmctld.stderr",
            "slurmctld.log",
            "slurmd.stderr",
            "slurmd.log",
        ] {
            let text =
                std::fs::read_to_string(self.dir().join("log").join(name)).unwrap_or_default();
            let tail: Vec<_> = text.lines().rev().take(40).collect();
            all += &format!("--- {name} (last lines)\n");
            for line in tail.into_iter().rev() {
                all += line;
                all += "\n";
            }
        }
        all
    }

    /// Runs `program args` and returns its stdout; panics (with the daemons' logs) on failure.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let output = self.command(program).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?}: {}\n{}",
            text(&output),
            self.logs()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn wait_until_idle(&mut self) {
        let start = Instant::now();
        loop {
            let exited = self
                .daemons
                .iter_mut()
                .find_map(|(name, child)| Some((*name, child.try_wait().unwrap()?)));
            if let Some((name, status)) = exited {
                panic!("{name} exited ({status}) while starting:\n{}", self.logs());
            }
            let ping = self.command("scontrol").arg("ping").output().unwrap();
            if ping.status.success() && text(&ping).contains("UP") {
                let state = self
                    .command("sinfo")
                    .args(["-h", "-o", "%T"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&state.stdout).trim() == "idle" {
                    return;
                }
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "Slurm did not become idle within {START_TIMEOUT:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `sbatch --parsable ARGS` (options, then the script and its arguments); the job id.
    pub fn sbatch(&self, args: &[&str]) -> String {
        let mut full = vec!["--parsable"];
        full.extend_from_slice(args);
        let out = self.run("sbatch", &full);
        out.trim().split(';').next().unwrap().to_string()
    }

    /// `sbatch --wait ARGS` under `timeout`: its exit status (the highest exit code of the
    /// job's tasks; 124 when `limit` passed) and output.
    pub fn sbatch_wait(&self, limit: Duration, args: &[&str]) -> Output {
        self.command("timeout")
            .arg(limit.as_secs().to_string())
            .args(["sbatch", "--wait", "--parsable"])
            .args(args)
            .output()
            .unwrap()
    }

    /// The state of a job (`JOBID` or `JOBID_TASK`) as scontrol reports it: PENDING, RUNNING,
    /// COMPLETED, CANCELLED, FAILED...; `None` once Slurm has forgotten it.
    pub fn job_state(&self, job: &str) -> Option<String> {
        let output = self
            .command("scontrol")
            .args(["show", "job", "-o", job])
            .output()
            .unwrap();
        if !output.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix("JobState="))
            .map(str::to_string)
    }

    /// Every state of `job` (an array job has one line per task), one per line of scontrol.
    /// Finished jobs are kept an hour (`MinJobAge`), longer than any test waits.
    pub fn job_states(&self, job: &str) -> Vec<String> {
        let output = self
            .command("scontrol")
            .args(["show", "job", "-o", job])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                line.split_whitespace()
                    .find_map(|kv| kv.strip_prefix("JobState="))
                    .map(str::to_string)
            })
            .collect()
    }

    /// Waits until no state of `job` is PENDING, RUNNING, CONFIGURING or COMPLETING; the
    /// states then.
    pub fn wait_done(&self, job: &str, limit: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let states = self.job_states(job);
            let active = [
                "PENDING",
                "RUNNING",
                "CONFIGURING",
                "COMPLETING",
                "REQUEUED",
            ];
            if !states.is_empty() && !states.iter().any(|s| active.contains(&s.as_str())) {
                return states;
            }
            assert!(
                start.elapsed() < limit,
                "job {job} not done within {limit:?}: {states:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls `condition` every 100 ms until it holds; panics after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
        let start = Instant::now();
        while !condition() {
            assert!(
                start.elapsed() < limit,
                "{what}: not within {limit:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Cancels every job, stops the daemons (SIGTERM, then SIGKILL after 10 s) and kills what
    /// is left with a working folder or an open file under [`Slurm::dir`] (slurmstepd detaches
    /// from slurmd and lingers; job processes too). Idempotent; [`Drop`] calls it.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = self
            .command("scancel")
            .args(["--user=root", "--full"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // slurmd before slurmctld; each by the pid we started.
        for (_, child) in self.daemons.iter_mut().rev() {
            terminate(child.id() as i32);
        }
        for (_, child) in &mut self.daemons {
            wait_or_kill(child, Duration::from_secs(10));
        }
        // Job steps and their processes: by what they hold open, never by name.
        for _ in 0..50 {
            let left = processes_under(self.dir());
            if left.is_empty() {
                return;
            }
            for pid in left {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        self.stop();
    }
}

fn terminate(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
}

fn wait_or_kill(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes (other than this one) whose working folder, executable or an open file is under
/// `dir`, from /proc.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let own = std::process::id() as i32;
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let proc = entry.path();
        let mut links: Vec<PathBuf> = ["cwd", "exe"]
            .iter()
            .filter_map(|l| std::fs::read_link(proc.join(l)).ok())
            .collect();
        if let Ok(fds) = std::fs::read_dir(proc.join("fd")) {
            links.extend(
                fds.flatten()
                    .filter_map(|fd| std::fs::read_link(fd.path()).ok()),
            );
        }
        if links.iter().any(|link| link.starts_with(&dir)) {
            found.push(pid);
        }
    }
    found
}
