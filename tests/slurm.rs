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

// ---------------------------------------------------------------------------------------------
// deploy/slurm on this Slurm.

fn deploy(name: &str) -> PathBuf {
    common::root().join("deploy/slurm").join(name)
}

/// The folders and files of one sharded run, and the environment deploy/slurm reads them from.
struct Run {
    input: PathBuf,
    output: PathBuf,
    seed_file: PathBuf,
    boomerang: PathBuf,
    shards: usize,
    /// More environment for the jobs.
    env: Vec<(&'static str, PathBuf)>,
}

impl Run {
    fn env(&self, command: &mut std::process::Command) {
        command
            .env("IN", &self.input)
            .env("OUT", &self.output)
            .env("SEED_FILE", &self.seed_file)
            .env("SHARDS", self.shards.to_string())
            .env("BOOMERANG", &self.boomerang)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
    }

    /// `deploy/slurm/submit.sh --cpus-per-task=1 --output=.. -- ANONYMIZE..`: the array job and
    /// the merge job ids.
    fn submit(&self, slurm: &Slurm, anonymize: &[&str]) -> (String, String) {
        let mut command = slurm.command(deploy("submit.sh"));
        self.env(&mut command);
        let output = command
            .args(["--cpus-per-task=1", &self.job_output(slurm)])
            .arg("--")
            .args(anonymize)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "submit.sh: {output:?}\n{}",
            slurm.logs()
        );
        let ids = String::from_utf8(output.stdout).unwrap();
        let (array, merge) = ids.trim().split_once(' ').unwrap();
        (array.to_string(), merge.to_string())
    }

    /// `sbatch OPTIONS.. deploy/slurm/SCRIPT ARGS..` with this run's environment; the job id.
    fn sbatch(&self, slurm: &Slurm, options: &[&str], script: &str, args: &[&str]) -> String {
        let mut command = slurm.command("sbatch");
        self.env(&mut command);
        let output = command
            .args(["--parsable", "--cpus-per-task=1", &self.job_output(slurm)])
            .args(options)
            .arg(deploy(script))
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "sbatch {script}: {output:?}");
        let id = String::from_utf8(output.stdout).unwrap();
        id.trim().split(';').next().unwrap().to_string()
    }

    fn job_output(&self, slurm: &Slurm) -> String {
        format!("--output={}/jobs/%x-%A_%a.out", slurm.dir().display())
    }

    fn part_report(&self, part: usize) -> PathBuf {
        common::sibling(
            &self.output,
            &format!("part-{part:04}-of-{:04}.report.csv", self.shards),
        )
    }
}

/// A stand-in for the boomerang binary: records its arguments (one per line) in
/// `$STUB_LOG/COMMAND-JOBID`, and for `anonymize` creates the part's report the real one would
/// (from `--shard`, reading the array's variables for `auto`) after a second; exits 3 (some
/// images not certified) in array task 0.
const STUB: &str = r#"log="$STUB_LOG/$1-$SLURM_JOB_ID"
printf '%s\n' "$@" > "$log.tmp"
mv "$log.tmp" "$log"
if [[ $1 == anonymize ]]; then
    args=("$@")
    for ((i = 0; i < ${#args[@]}; i++)); do
        if [[ ${args[i]} == --shard ]]; then shard=${args[i + 1]}; fi
    done
    if [[ $shard == auto ]]; then
        k=$((SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN)) n=$SLURM_ARRAY_TASK_COUNT
    else
        k=${shard%/*} n=${shard#*/}
    fi
    sleep 1
    echo "part $k of $n" >> "$(printf '%s.part-%04d-of-%04d.report.csv' "${args[-1]%/}" "$k" "$n")"
    if [[ ${SHARD:-} == "" && $SLURM_ARRAY_TASK_ID == 0 ]]; then exit 3; fi
fi
"#;

/// The arguments of each recorded call of `command` by the stub, by job id.
fn stub_calls(log: &Path, command: &str) -> Vec<Vec<String>> {
    let mut calls: Vec<_> = std::fs::read_dir(log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with(&format!("{command}-")) && !name.ends_with(".tmp")
        })
        .collect();
    calls.sort();
    calls
        .into_iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// deploy/slurm's plumbing with a stand-in binary: each array task runs `anonymize --shard auto
/// --seed-file` on IN and OUT (exit 3 counts as a finished part), the merge runs after all of
/// them on the parts' reports in order, and a part resubmitted alone with SHARD=K/N resumes.
#[test]
fn the_slurm_deployment_shards_merges_after_and_resumes_a_part() {
    let _serial = serial();
    let Some(slurm) = Slurm::start() else {
        return;
    };
    let work = slurm.dir().join("work");
    let log = work.join("log");
    std::fs::create_dir_all(work.join("in")).unwrap();
    std::fs::create_dir_all(&log).unwrap();
    let run = Run {
        input: work.join("in"),
        output: work.join("out"),
        seed_file: work.join("run.seed"),
        boomerang: script(&work.join("boomerang"), STUB),
        shards: 4,
        env: vec![("STUB_LOG", log.clone())],
    };
    let (array, merge) = run.submit(&slurm, &["--policy", "P.toml"]);
    let states = slurm.wait_done(&merge, Duration::from_secs(120));
    assert_eq!(states, ["COMPLETED"], "the merge\n{}", slurm.logs());
    assert_eq!(slurm.job_states(&array), vec!["COMPLETED"; 4]);

    let (input, output, seed) = (s(&run.input), s(&run.output), s(&run.seed_file));
    let expected = [
        "anonymize",
        "--quiet",
        "--shard",
        "auto",
        "--seed-file",
        seed,
        "--policy",
        "P.toml",
        input,
        output,
    ];
    assert_eq!(stub_calls(&log, "anonymize"), vec![expected; 4]);
    let parts: Vec<_> = (0..4).map(|k| run.part_report(k)).collect();
    for (k, part) in parts.iter().enumerate() {
        let text = std::fs::read_to_string(part).unwrap();
        assert_eq!(text, format!("part {k} of 4\n"));
    }
    let mut merged = vec!["report", "merge"];
    merged.extend(parts.iter().map(|p| s(p)));
    let all = common::report_path(&run.output);
    merged.extend(["-o", s(&all)]);
    assert_eq!(stub_calls(&log, "report"), vec![merged]);

    // Part 2 again, alone: it names its part and resumes it.
    let again = run.sbatch(
        &slurm,
        &["--array=2", "--export=ALL,SHARD=2/4"],
        "anonymize.sbatch",
        &["--policy", "P.toml"],
    );
    let states = slurm.wait_done(&again, Duration::from_secs(120));
    assert_eq!(states, ["COMPLETED"], "{}", slurm.logs());
    let calls = stub_calls(&log, "anonymize");
    let resumed = calls
        .iter()
        .find(|call| call.contains(&"2/4".to_string()))
        .expect("the resubmitted part");
    let expected = [
        "anonymize",
        "--quiet",
        "--shard",
        "2/4",
        "--seed-file",
        seed,
        "--resume",
        "--policy",
        "P.toml",
        input,
        output,
    ];
    assert_eq!(resumed, &expected);
    let text = std::fs::read_to_string(&parts[2]).unwrap();
    assert_eq!(text, "part 2 of 4\npart 2 of 4\n");
}
