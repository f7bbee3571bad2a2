//! `--shard auto`: which part of a sharded run this process is, from the job array's
//! environment. The environment is passed in (a lookup function), so it is testable.
//!
//! Looked up in this order, the first one set wins:
//! 1. `BOOMERANG_SHARD=K/N`;
//! 2. Slurm job arrays: `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`, and
//!    `SLURM_ARRAY_TASK_MIN` (default 0) and `SLURM_ARRAY_TASK_STEP` (default 1):
//!    K = (ID - MIN) / STEP, N = COUNT, so `--array=1-4` gives parts 0..3 of 4;
//! 3. Kubernetes Indexed Jobs: `JOB_COMPLETION_INDEX` = K, with `--shards N`.
//!
//! `--shards N`, when given, must agree with what the environment says.

use anyhow::{bail, Context};

use crate::io::shard::{Shard, ShardRequest};

/// The variables `--shard auto` reads, for messages.
pub const ENV_VARIABLES: &str = "BOOMERANG_SHARD=K/N, SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT (and SLURM_ARRAY_TASK_MIN), or JOB_COMPLETION_INDEX with --shards N";

/// The part `request` names, reading `env` for `auto`; `shards` is `--shards N`.
pub fn resolve(
    request: ShardRequest,
    shards: Option<u32>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Shard> {
    let shard = match request {
        ShardRequest::Fixed(shard) => shard,
        ShardRequest::Auto => from_env(shards, env)?,
    };
    if let Some(count) = shards.filter(|&count| count != shard.count()) {
        bail!(
            "--shards {count} disagrees with part {shard} ({count} parts asked, {} given)",
            shard.count()
        );
    }
    Ok(shard)
}

fn from_env(shards: Option<u32>, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Shard> {
    let get = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    if let Some(value) = get("BOOMERANG_SHARD") {
        return value
            .parse::<Shard>()
            .with_context(|| format!("--shard auto: BOOMERANG_SHARD={value}"));
    }
    let number = |name: &str, value: &str| -> anyhow::Result<u32> {
        value
            .trim()
            .parse::<u32>()
            .with_context(|| format!("--shard auto: {name}={value} is not a whole number >= 0"))
    };
    if let Some(id) = get("SLURM_ARRAY_TASK_ID") {
        let id = number("SLURM_ARRAY_TASK_ID", &id)?;
        let Some(count) = get("SLURM_ARRAY_TASK_COUNT") else {
            bail!("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; run as a job array (sbatch --array=0-N) or pass --shard K/N");
        };
        let count = number("SLURM_ARRAY_TASK_COUNT", &count)?;
        let min = match get("SLURM_ARRAY_TASK_MIN") {
            Some(min) => number("SLURM_ARRAY_TASK_MIN", &min)?,
            None => 0,
        };
        let step = match get("SLURM_ARRAY_TASK_STEP") {
            Some(step) => number("SLURM_ARRAY_TASK_STEP", &step)?.max(1),
            None => 1,
        };
        if id < min || (id - min) % step != 0 {
            bail!("--shard auto: SLURM_ARRAY_TASK_ID={id} is not MIN + k*STEP (SLURM_ARRAY_TASK_MIN={min}, STEP={step}); use a plain range such as --array=0-{} or pass --shard K/N", count.saturating_sub(1));
        }
        return Shard::new((id - min) / step, count).with_context(|| {
            format!("--shard auto: SLURM_ARRAY_TASK_ID={id}, SLURM_ARRAY_TASK_MIN={min}, SLURM_ARRAY_TASK_COUNT={count} (a job array must be one range, e.g. --array=0-{} or 1-{count})", count.saturating_sub(1))
        });
    }
    if let Some(index) = get("JOB_COMPLETION_INDEX") {
        let index = number("JOB_COMPLETION_INDEX", &index)?;
        let Some(count) = shards else {
            bail!("--shard auto: JOB_COMPLETION_INDEX={index} says which part, not how many: pass --shards N (the Job's completions)");
        };
        return Shard::new(index, count).with_context(|| {
            format!("--shard auto: JOB_COMPLETION_INDEX={index}, --shards {count}")
        });
    }
    bail!("--shard auto: none of the variables that say which part this is is set ({ENV_VARIABLES}); pass --shard K/N instead")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    fn auto(shards: Option<u32>, pairs: &[(&str, &str)]) -> anyhow::Result<Shard> {
        resolve(ShardRequest::Auto, shards, &env_of(pairs))
    }

    #[test]
    fn slurm_arrays_from_zero_and_from_one() {
        let zero = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(auto(None, &zero).unwrap(), Shard::new(2, 4).unwrap());
        let one = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(auto(None, &one).unwrap(), Shard::new(3, 4).unwrap());
        assert_eq!(auto(Some(4), &one).unwrap(), Shard::new(3, 4).unwrap());
        assert!(auto(Some(5), &one)
            .unwrap_err()
            .to_string()
            .contains("--shards 5"));
        let past = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert!(format!("{:#}", auto(None, &past).unwrap_err()).contains("SLURM_ARRAY_TASK_MIN"));
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert_eq!(auto(None, &stepped).unwrap(), Shard::new(3, 4).unwrap());
        let bad = [
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert!(auto(None, &bad)
            .unwrap_err()
            .to_string()
            .contains("SLURM_ARRAY_TASK_ID=x"));
    }

    #[test]
    fn kubernetes_needs_shards_and_explicit_wins() {
        let k8s = [("JOB_COMPLETION_INDEX", "5")];
        assert_eq!(auto(Some(8), &k8s).unwrap(), Shard::new(5, 8).unwrap());
        assert!(auto(None, &k8s)
            .unwrap_err()
            .to_string()
            .contains("--shards N"));
        assert!(auto(Some(5), &k8s).is_err());
        let both = [("BOOMERANG_SHARD", "1/3"), ("JOB_COMPLETION_INDEX", "5")];
        assert_eq!(auto(None, &both).unwrap(), Shard::new(1, 3).unwrap());
    }

    #[test]
    fn nothing_set_names_the_variables() {
        let message = auto(None, &[]).unwrap_err().to_string();
        for name in [
            "BOOMERANG_SHARD",
            "SLURM_ARRAY_TASK_ID",
            "JOB_COMPLETION_INDEX",
        ] {
            assert!(message.contains(name), "{message}");
        }
        let fixed = Shard::new(1, 2).unwrap();
        assert_eq!(
            resolve(ShardRequest::Fixed(fixed), None, &env_of(&[])).unwrap(),
            fixed
        );
        assert!(resolve(ShardRequest::Fixed(fixed), Some(3), &env_of(&[])).is_err());
    }
}
