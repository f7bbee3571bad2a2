//! The deployment files (deploy/): the Kubernetes Indexed Job and the Slurm array job shard a run
//! consistently, read the seed from a secret file, ask for one GPU per part and merge after.
//! (tests/slurm.rs runs the Slurm files on a real Slurm.)

mod common;

use std::os::unix::fs::PermissionsExt;

use serde_yaml::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(common::root().join(path)).unwrap()
}

fn get<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |value, key| {
        let next = match key.parse::<usize>() {
            Ok(index) => value.get(index),
            Err(_) => value.get(key),
        };
        next.unwrap_or_else(|| panic!("no `{key}` (in `{path}`) in {value:?}"))
    })
}

fn str_of<'a>(value: &'a Value, path: &str) -> &'a str {
    get(value, path).as_str().unwrap()
}

fn u64_of(value: &Value, path: &str) -> u64 {
    get(value, path).as_u64().unwrap()
}

/// A container's shell script (`command: [/bin/sh, -c]`, `args: [SCRIPT]`).
fn script_of(container: &Value) -> &str {
    let command: Vec<_> = get(container, "command")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(command, ["/bin/sh", "-c"]);
    str_of(container, "args.0")
}

/// `bash -n`: the script parses.
fn parses(path: &str) {
    let status = std::process::Command::new("bash")
        .arg("-n")
        .arg(common::root().join(path))
        .status()
        .unwrap();
    assert!(status.success(), "{path} does not parse");
}

#[test]
fn the_kubernetes_job_is_indexed_and_shards_by_its_completions() {
    let text = read("deploy/k8s/anonymize-job.yaml");
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect();
    assert_eq!(
        docs.len(),
        3,
        "the claim, the anonymize Job and the merge Job"
    );
    let (storage, job, merge) = (&docs[0], &docs[1], &docs[2]);
    assert_eq!(str_of(storage, "kind"), "PersistentVolumeClaim");
    assert_eq!(str_of(storage, "spec.accessModes.0"), "ReadWriteMany");
    for doc in &docs[1..] {
        assert_eq!(str_of(doc, "apiVersion"), "batch/v1");
        assert_eq!(str_of(doc, "kind"), "Job");
    }
    assert_eq!(str_of(job, "metadata.labels.step"), "anonymize");
    assert_eq!(str_of(merge, "metadata.labels.step"), "merge");

    assert_eq!(str_of(job, "spec.completionMode"), "Indexed");
    let shards = u64_of(job, "spec.completions");
    assert!(shards > 1);
    assert_eq!(u64_of(job, "spec.parallelism"), shards);
    let pod = get(job, "spec.template.spec");
    assert_eq!(str_of(pod, "restartPolicy"), "Never");
    let container = get(pod, "containers.0");
    let script = script_of(container);
    assert!(script.contains("--shard auto"), "{script}");
    assert!(
        script.contains(&format!("--shards {shards} ")),
        "--shards must equal completions ({shards}): {script}"
    );
    // The part's report, to resume a retried pod, is named from JOB_COMPLETION_INDEX and N.
    assert!(
        script.contains("part-%04d-of-%04d")
            && script.contains(&format!("\"$JOB_COMPLETION_INDEX\" {shards})")),
        "{script}"
    );
    assert!(script.contains("$resume"), "{script}");
    let limits = get(container, "resources.limits");
    assert_eq!(
        limits.get("nvidia.com/gpu").and_then(Value::as_u64),
        Some(1)
    );

    // --seed-file names a file on a memory-backed folder, mounted read-only, that an init
    // container fills from the Secret volume.
    let seed_file = script
        .split_whitespace()
        .skip_while(|word| *word != "--seed-file")
        .nth(1)
        .unwrap_or_else(|| panic!("no --seed-file in {script}"));
    let volumes = get(pod, "volumes").as_sequence().unwrap();
    let volume_named = |name: &str| {
        volumes
            .iter()
            .find(|v| str_of(v, "name") == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let mount_under = |container: &Value, path: &str| {
        get(container, "volumeMounts")
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| path.starts_with(&format!("{}/", str_of(m, "mountPath"))))
            .unwrap_or_else(|| panic!("{path} is on no volume"))
            .clone()
    };
    let copy_mount = mount_under(container, seed_file);
    assert_eq!(get(&copy_mount, "readOnly").as_bool(), Some(true));
    let copy_volume = volume_named(str_of(&copy_mount, "name"));
    assert_eq!(str_of(copy_volume, "emptyDir.medium"), "Memory");
    let init = get(pod, "initContainers.0");
    let copier = script_of(init);
    let source = copier
        .split_whitespace()
        .find(|word| word.starts_with('/') && *word != seed_file)
        .unwrap_or_else(|| panic!("no source file in {copier}"));
    let source_mount = mount_under(init, source);
    assert_eq!(get(&source_mount, "readOnly").as_bool(), Some(true));
    let secret = get(volume_named(str_of(&source_mount, "name")), "secret");
    assert!(!str_of(secret, "secretName").is_empty());
    let file = &source[str_of(&source_mount, "mountPath").len() + 1..];
    let items = get(secret, "items").as_sequence().unwrap();
    assert!(
        items.iter().any(|item| str_of(item, "path") == file),
        "{file} is not an item of the secret"
    );
    assert_eq!(
        str_of(&mount_under(init, seed_file), "name"),
        str_of(&copy_mount, "name")
    );

    // The copier run on a secret file as kubelet leaves it with fsGroup (0440, which boomerang
    // refuses): its copy is one boomerang reads.
    let temp = tempfile::tempdir().unwrap();
    let secrets = temp.path().join("secrets");
    let copies = temp.path().join("copies");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::create_dir_all(&copies).unwrap();
    let as_mounted = secrets.join(file);
    let seed = 0x5eed_u64;
    std::fs::write(&as_mounted, boomerang::io::secret::encode(seed)).unwrap();
    std::fs::set_permissions(&as_mounted, PermissionsExt::from_mode(0o440)).unwrap();
    assert!(boomerang::io::secret::read(&as_mounted).is_err());
    let local = |path: &str| {
        path.replace(
            str_of(&source_mount, "mountPath"),
            secrets.to_str().unwrap(),
        )
        .replace(str_of(&copy_mount, "mountPath"), copies.to_str().unwrap())
    };
    let status = std::process::Command::new("sh")
        .args(["-c", &local(copier)])
        .status()
        .unwrap();
    assert!(status.success(), "{copier}");
    let copy = std::path::PathBuf::from(local(seed_file));
    assert_eq!(boomerang::io::secret::read(&copy).unwrap(), seed);

    // IN and OUT on one shared ReadWriteMany claim, the same for the merge.
    let claim = |pod: &Value| {
        get(pod, "volumes")
            .as_sequence()
            .unwrap()
            .iter()
            .find_map(|v| v.get("persistentVolumeClaim"))
            .map(|c| str_of(c, "claimName").to_string())
            .unwrap()
    };
    let merge_pod = get(merge, "spec.template.spec");
    assert_eq!(claim(pod), str_of(storage, "metadata.name"));
    assert_eq!(claim(merge_pod), claim(pod));

    // The merge takes exactly the N parts.
    let merge_script = script_of(get(merge_pod, "containers.0"));
    assert!(merge_script.contains("report merge"), "{merge_script}");
    assert!(
        merge_script.contains(&format!("-of-{shards:04}.report.csv"))
            && merge_script.contains(&format!("-ne {shards} ")),
        "{merge_script}"
    );
    assert!(read("deploy/k8s/run.sh").contains("kubectl wait --for=condition=complete"));
    parses("deploy/k8s/run.sh");
}

/// The `#SBATCH` options of a job script.
fn sbatch_options(script: &str) -> Vec<&str> {
    script
        .lines()
        .filter_map(|line| line.strip_prefix("#SBATCH "))
        .map(str::trim)
        .collect()
}

#[test]
fn the_slurm_array_job_shards_by_its_tasks_and_merges_after() {
    let script = read("deploy/slurm/anonymize.sbatch");
    let options = sbatch_options(&script);
    assert!(
        options.iter().any(|o| o.starts_with("--array=0-")),
        "{options:?}"
    );
    assert!(options.contains(&"--gres=gpu:1"), "{options:?}");
    assert!(script.contains("--shard auto"));
    assert!(script.contains("--seed-file \"$SEED_FILE\""));
    assert!(script.contains("--resume"));
    assert!(script.contains("part-%0*d-of-%0*d"));

    let merge = read("deploy/slurm/merge.sbatch");
    assert!(merge.contains("report merge"));
    assert!(!sbatch_options(&merge)
        .iter()
        .any(|o| o.starts_with("--gres")));

    let submit = read("deploy/slurm/submit.sh");
    assert!(submit.contains("--dependency=\"afterok:$array\""));
    assert!(submit.contains("anonymize.sbatch") && submit.contains("merge.sbatch"));
    for path in [
        "deploy/slurm/anonymize.sbatch",
        "deploy/slurm/merge.sbatch",
        "deploy/slurm/submit.sh",
    ] {
        parses(path);
    }
}

/// Runs deploy/slurm/anonymize.sbatch with `env` and a stand-in for boomerang beside the part
/// report `existing`; returns the arguments boomerang was given.
fn sbatch_arguments(env: &[(&str, &str)], existing: &str) -> String {
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("out");
    std::fs::write(temp.path().join(existing), "").unwrap();
    let stand_in = temp.path().join("boomerang");
    let arguments = temp.path().join("arguments");
    std::fs::write(
        &stand_in,
        format!("#!/bin/sh\necho \"$@\" > {}\n", arguments.display()),
    )
    .unwrap();
    std::fs::set_permissions(&stand_in, PermissionsExt::from_mode(0o755)).unwrap();
    let status = std::process::Command::new("bash")
        .arg(common::root().join("deploy/slurm/anonymize.sbatch"))
        .env("IN", temp.path().join("in"))
        .env("OUT", &out)
        .env("SEED_FILE", temp.path().join("seed"))
        .env("BOOMERANG", &stand_in)
        .envs(env.iter().copied())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(arguments).unwrap()
}

#[test]
fn a_requeued_slurm_task_finds_its_part_report_as_boomerang_names_it() {
    // --array=0-6:2 (4 tasks): task 4 is part 2 of 4.
    let stepped = [
        ("SLURM_ARRAY_TASK_ID", "4"),
        ("SLURM_ARRAY_TASK_MIN", "0"),
        ("SLURM_ARRAY_TASK_STEP", "2"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
    ];
    let arguments = sbatch_arguments(&stepped, "out.part-0002-of-0004.report.csv");
    assert!(arguments.contains("--resume"), "{arguments}");
    let arguments = sbatch_arguments(&stepped, "out.part-0004-of-0004.report.csv");
    assert!(!arguments.contains("--resume"), "{arguments}");
    // Past 10000 parts the numbers have 5 digits (boomerang's Shard::tag).
    let arguments = sbatch_arguments(
        &[("SHARD", "3/10001")],
        "out.part-00003-of-10001.report.csv",
    );
    assert!(arguments.contains("--resume"), "{arguments}");
}
