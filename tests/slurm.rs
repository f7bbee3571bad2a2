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
    let task = format!("{array}_2");
    assert_eq!(slurm.job_state(&task).as_deref(), Some("COMPLETED"));

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
    env: Vec<(&'static str, std::ffi::OsString)>,
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
        env: vec![("STUB_LOG", log.clone().into())],
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
        "--device",
        "cuda",
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
        "--device",
        "cuda",
        "--policy",
        "P.toml",
        input,
        output,
    ];
    assert_eq!(resumed, &expected);
    let text = std::fs::read_to_string(&parts[2]).unwrap();
    assert_eq!(text, "part 2 of 4\npart 2 of 4\n");
}

/// `count` distinct photos (faces and not) in `dir/in`.
fn dataset(dir: &Path, count: usize) -> PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let sources = [
        "obama.jpg",
        "obama2.jpg",
        "biden.jpg",
        "astronaut.jpg",
        "coffee.jpg",
        "obama3.jpg",
    ];
    for k in 0..count {
        let mut bytes = std::fs::read(common::faces().join(sources[k % sources.len()])).unwrap();
        // Distinct contents, so each image has its own seed.
        bytes.extend_from_slice(&[k as u8; 4]);
        std::fs::write(input.join(format!("img{k:02}.jpg")), bytes).unwrap();
    }
    input
}

/// OUT and its report (merged) equal the unsharded reference's: the same files byte for byte,
/// the same rows but for the time (and the chain, which covers it); the run record is there.
fn same_run(reference: &Path, output: &Path) {
    use boomerang::records::report::{verify, ReportRow};
    assert_eq!(common::tree(reference), common::tree(output));
    let rows = |output: &Path| -> Vec<ReportRow> {
        let report = common::report_path(output);
        let rows = verify(&report).unwrap_or_else(|e| panic!("{}: {e:#}", report.display()));
        rows.into_iter()
            .map(|mut row| {
                row.milliseconds = None;
                row.chain.clear();
                row
            })
            .collect()
    };
    let (expected, found) = (rows(reference), rows(output));
    assert_eq!(expected.len(), 24);
    assert_eq!(expected, found);
    assert!(common::run_json_path(output).exists());
}

/// `boomerang audit REPORT --inputs IN --outputs OUT --policy P --recompute 4` exits 0.
fn audit_is_clean(run: &Run, policy: &Path) {
    let output = std::process::Command::new(&run.boomerang)
        .arg("audit")
        .arg(common::report_path(&run.output))
        .arg("--inputs")
        .arg(&run.input)
        .arg("--outputs")
        .arg(&run.output)
        .arg("--policy")
        .arg(policy)
        .args(["--recompute", "4"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "audit: {output:?}");
}

/// The shipped deploy/slurm files on the real Slurm with the real binary and the tiny model: a
/// run split over a 4-task array (`--shard auto --seed-file`) and merged after it equals an
/// unsharded run with the same secret, and audits clean; a part cancelled mid-run and
/// resubmitted alone resumes to the same result.
#[test]
fn a_sharded_slurm_run_equals_an_unsharded_one_and_a_cancelled_part_resumes() {
    let _serial = serial();
    let Some(slurm) = Slurm::start() else {
        return;
    };
    let work = slurm.dir().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let input = dataset(&work, 24);
    let policy = common::demo_policy(&work, &[]);
    let boomerang = PathBuf::from(env!("CARGO_BIN_EXE_boomerang"));
    let seed_file = work.join("run.seed");
    let run = |output: &str| Run {
        input: input.clone(),
        output: work.join(output),
        seed_file: seed_file.clone(),
        boomerang: boomerang.clone(),
        shards: 4,
        // The reference runs on the CPU: so do the parts (the fake GPUs are only for Slurm).
        env: vec![("DEVICE", "cpu".into())],
    };
    let anonymize = ["--policy", s(&policy)];

    // One secret for every part: `boomerang secret new FILE`.
    let made = std::process::Command::new(&boomerang)
        .args(["secret", "new"])
        .arg(&seed_file)
        .output()
        .unwrap();
    assert!(made.status.success(), "secret new: {made:?}");

    // The unsharded reference, with the same secret.
    let reference = work.join("reference");
    let status = common::anonymize(&policy, &input, &reference, &["--seed-file", s(&seed_file)])
        .output()
        .unwrap()
        .status;
    assert!(matches!(status.code(), Some(0 | 3)), "{status}");

    // submit.sh: the 4-task array and the merge after it.
    let sharded = run("out");
    let (array, merge) = sharded.submit(&slurm, &anonymize);
    let states = slurm.wait_done(&merge, Duration::from_secs(1200));
    assert_eq!(states, ["COMPLETED"], "the merge\n{}", slurm.logs());
    assert_eq!(slurm.job_states(&array), vec!["COMPLETED"; 4]);
    for part in 0..4 {
        assert!(sharded.part_report(part).exists());
    }
    same_run(&reference, &sharded.output);
    audit_is_clean(&sharded, &policy);

    // Part 1 cancelled once it wrote a row, resubmitted alone, then the merge.
    let cancelled = run("cancelled");
    let array = cancelled.sbatch(&slurm, &["--array=0-3"], "anonymize.sbatch", &anonymize);
    let part = cancelled.part_report(1);
    slurm.wait_for("part 1 wrote a row", Duration::from_secs(900), || {
        std::fs::read_to_string(&part).is_ok_and(|text| text.lines().count() >= 2)
    });
    let task = format!("{array}_1");
    slurm.run("scancel", &[&task]);
    assert_eq!(
        slurm.wait_done(&task, Duration::from_secs(60)),
        ["CANCELLED"],
        "part 1 ended before it was cancelled"
    );
    slurm.wait_done(&array, Duration::from_secs(1200));
    let lines = |path: &Path| std::fs::read_to_string(path).unwrap().lines().count();
    let rows_when_cancelled = lines(&part);
    let again = cancelled.sbatch(
        &slurm,
        &["--array=1", "--export=ALL,SHARD=1/4"],
        "anonymize.sbatch",
        &anonymize,
    );
    let merge = cancelled.sbatch(
        &slurm,
        &[&format!("--dependency=afterok:{again}")],
        "merge.sbatch",
        &[],
    );
    let states = slurm.wait_done(&merge, Duration::from_secs(1200));
    assert_eq!(states, ["COMPLETED"], "the merge\n{}", slurm.logs());
    assert_eq!(slurm.job_states(&again), ["COMPLETED"]);
    assert!(
        lines(&part) > rows_when_cancelled,
        "the resumed part added rows"
    );
    same_run(&reference, &cancelled.output);
    audit_is_clean(&cancelled, &policy);
}
