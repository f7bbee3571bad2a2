//! Tests on a real single-node Slurm (tests/common/slurm.rs): the harness itself (array jobs,
//! dependencies, cancelling, nothing left running), and boomerang's Slurm deployment
//! (deploy/slurm) end to end. `tools/test` installs Slurm (as root); without it these fail,
//! unless `BOOMERANG_SKIP_SLURM=1`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::slurm::{processes_under, Slurm};

/// One cluster at a time: each starts its own daemons, and the machine is small.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes an executable job script.
fn script(path: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/bash\nset -eu\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Whether `pid` is gone (or a zombie nobody reaped: it runs nothing).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn array_tasks_see_their_index_and_a_dependent_job_runs_after_them() {
    let _serial = serial();
    let started = Instant::now();
    let Some(mut slurm) = Slurm::start() else {
        return;
    };
    eprintln!("slurm started in {:?}", started.elapsed());
    let dir = slurm.dir().to_path_buf();
    let files = dir.join("jobs/files");
    std::fs::create_dir_all(&files).unwrap();
    let output = format!("--output={}/jobs/%A_%a.out", dir.display());

    let task = script(
        &dir.join("jobs/task.sh"),
        r#"echo "$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_TASK_COUNT $SLURM_ARRAY_TASK_MIN" > "$FILES/task-$SLURM_ARRAY_TASK_ID"
sleep 1
"#,
    );
    let after = script(
        &dir.join("jobs/after.sh"),
        r#"cat "$FILES"/task-* > "$FILES/after""#,
    );
    let export = format!("--export=ALL,FILES={}", files.display());
    let array = slurm.sbatch(&["--array=0-3", &export, &output, s(&task)]);
    let dependency = format!("--dependency=afterok:{array}");
    let waited = slurm.sbatch_wait(
        Duration::from_secs(120),
        &[&dependency, &export, &output, s(&after)],
    );
    assert!(
        waited.status.success(),
        "dependent job: {waited:?}\n{}",
        slurm.logs()
    );
    for id in 0..4 {
        let line = std::fs::read_to_string(files.join(format!("task-{id}"))).unwrap();
        assert_eq!(line.trim(), format!("{id} 4 0"), "task {id}");
    }
    // The dependent job ran after all four: it saw their files.
    let seen = std::fs::read_to_string(files.join("after")).unwrap();
    assert_eq!(seen.lines().count(), 4, "{seen}");
    assert_eq!(slurm.job_states(&array), vec!["COMPLETED"; 4]);

    // `sbatch --wait` on an array returns the highest exit code of its tasks.
    let failing = script(&dir.join("jobs/exit.sh"), "exit $SLURM_ARRAY_TASK_ID\n");
    let waited = slurm.sbatch_wait(
        Duration::from_secs(120),
        &["--array=0-3", &output, s(&failing)],
    );
    assert_eq!(waited.status.code(), Some(3), "{waited:?}");

    let stopping = Instant::now();
    slurm.stop();
    eprintln!("slurm stopped in {:?}", stopping.elapsed());
    assert_eq!(processes_under(&dir), Vec::<i32>::new());
}

/// Starts a job that records its pid and that of a child, then sleeps; waits until it runs.
fn start_sleeper(slurm: &Slurm, name: &str) -> (String, Vec<i32>) {
    let dir = slurm.dir().join("jobs").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let sleeper = script(
        &dir.join("sleeper.sh"),
        r#"sleep 300 &
echo "$$ $!" > pids
wait
touch finished
"#,
    );
    let job = slurm.sbatch(&[
        &format!("--chdir={}", dir.display()),
        &format!("--output={}/%j.out", dir.display()),
        s(&sleeper),
    ]);
    let pids = dir.join("pids");
    slurm.wait_for("the job started", Duration::from_secs(60), || {
        std::fs::read_to_string(&pids).is_ok_and(|t| t.ends_with('\n'))
    });
    assert_eq!(slurm.job_state(&job).as_deref(), Some("RUNNING"));
    let pids = std::fs::read_to_string(&pids)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    (job, pids)
}

#[test]
fn a_cancelled_job_is_seen_cancelled_and_stop_leaves_nothing_running() {
    let _serial = serial();
    let Some(mut slurm) = Slurm::start() else {
        return;
    };
    let dir = slurm.dir().to_path_buf();
    let daemons = slurm.daemon_pids();
    let (job, pids) = start_sleeper(&slurm, "cancelled");
    slurm.run("scancel", &[&job]);
    assert_eq!(
        slurm.wait_done(&job, Duration::from_secs(60)),
        vec!["CANCELLED"]
    );
    assert!(!dir.join("jobs/cancelled/finished").exists());

    // Another job left running when the harness stops.
    let (_, more) = start_sleeper(&slurm, "running");
    slurm.stop();
    let left = processes_under(&dir);
    assert!(left.is_empty(), "left running under {dir:?}: {left:?}");
    for pid in daemons.into_iter().chain(pids).chain(more) {
        assert!(gone(pid), "job process {pid} still runs");
    }
}

#[test]
fn a_panicking_test_leaves_nothing_running() {
    let _serial = serial();
    let seen = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let Some(slurm) = Slurm::start() else {
            return;
        };
        let (_, mut pids) = start_sleeper(&slurm, "running");
        pids.extend(slurm.daemon_pids());
        *seen.lock().unwrap() = Some((slurm.dir().to_path_buf(), pids));
        panic!("a failing test");
    });
    let (dir, pids) = match (result, seen.into_inner().unwrap()) {
        (Err(_), Some(seen)) => seen,
        (Ok(()), None) => return, // skipped
        (Err(panic), None) => std::panic::resume_unwind(panic),
        (Ok(()), Some(_)) => unreachable!(),
    };
    let left = processes_under(&dir);
    assert!(left.is_empty(), "left running under {dir:?}: {left:?}");
    for pid in pids {
        assert!(gone(pid), "job process {pid} still runs");
    }
    assert!(!dir.exists(), "the temporary folder was not removed");
}
