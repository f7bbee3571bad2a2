//! The auditor's recomputer: re-scores a report row from its files and re-runs Boomerang from its
//! seed, with the same decoding, model and encoding `anonymize` used, so a faithful run gives the
//! same distance and byte-identical PNGs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::audit::AuditConfig;
use crate::audit::{RecomputedRate, Recomputer, Rescored};
use crate::certify::spec::EmbedderSpec;
use crate::certify::{self, Certifier};
use crate::commands::anonymize::level_settings;
use crate::commands::render::{self, ImagePlan};
use crate::diffusion::engine::{Engine, Settings};
use crate::io::dataset::{self, EntryKind};
use crate::io::hashing::Verify;
use crate::io::imageio;
use crate::io::runtime::{self, Device, SessionOptions};
use crate::policy::{Policy, Region};
use crate::records::report::ReportRow;

pub struct RunRecomputer {
    engine: Engine,
    certifier: Certifier,
    policy: Policy,
    inputs: HashMap<String, PathBuf>,
    outputs: HashMap<String, PathBuf>,
}

/// Report path text → file, for every file under `root`.
fn index(root: &Path) -> anyhow::Result<HashMap<String, PathBuf>> {
    Ok(dataset::walk(root)?
        .into_iter()
        .filter(|entry| matches!(entry.kind, EntryKind::Image))
        .map(|entry| {
            (
                dataset::path_text(&entry.relative),
                root.join(&entry.relative),
            )
        })
        .collect())
}

impl RunRecomputer {
    /// Needs the run's inputs, outputs and policy; the model and embedder default to the policy's.
    pub fn open(args: &AuditConfig) -> anyhow::Result<RunRecomputer> {
        let (Some(inputs), Some(outputs), Some(policy)) =
            (&args.run.inputs, &args.run.outputs, &args.claimed.policy)
        else {
            bail!("--recompute and --seed-sample need --inputs, --outputs and --policy");
        };
        let policy = Policy::load(policy)?;
        let model = match &args.claimed.model {
            Some(given) => crate::io::data_dir::find_model_dir(given, crate::certify::MODELS_ENV)
                .map_err(anyhow::Error::msg)?,
            None => policy.model.path.clone(),
        };
        let embedder = args
            .claimed
            .embedder
            .clone()
            .unwrap_or_else(|| policy.embedder.spec.clone());
        let device = args.recheck.device;
        let runtime = runtime::init_for(None, device != Device::Cpu)?;
        // The auditor trusts no remembered hash.
        let options = SessionOptions {
            device,
            verify: Verify::Full,
            ..SessionOptions::default()
        };
        let engine = Engine::open(&model, runtime, &options)?;
        // The detector the embedder spec pins, found as anonymize finds it (or the one given).
        let detector = match &args.claimed.detector {
            Some(path) => path.clone(),
            None => certify::pinned_detector(&EmbedderSpec::load(&embedder)?)?.path,
        };
        // The policy's whole certifier: whole-image rows are judged by its feature embedder,
        // and its second opinions are re-asked.
        let certifier = policy.certifier(runtime, &embedder, &detector, &options)?;
        Ok(RunRecomputer {
            engine,
            certifier,
            policy,
            inputs: index(inputs)?,
            outputs: index(outputs)?,
        })
    }

    fn input(&self, row: &ReportRow) -> anyhow::Result<&PathBuf> {
        self.inputs
            .get(&row.input_path)
            .with_context(|| format!("input {} not found in --inputs", row.input_path))
    }
}

impl Recomputer for RunRecomputer {
    fn rescore(&mut self, row: &ReportRow) -> anyhow::Result<Rescored> {
        let input = dataset::load_image(self.input(row)?)?;
        let output_path = self
            .outputs
            .get(&row.output_path)
            .with_context(|| format!("output {} not found in --outputs", row.output_path))?;
        let output = dataset::load_image(output_path)?;
        let faces_in = self.certifier.analyze(&input.image)?;
        let faces_out = self.certifier.analyze_output(&output.image, &faces_in)?;
        let comparison = self.certifier.compare(&faces_in, &faces_out)?;
        let opinions = self.certifier.second_opinions(&faces_in, &faces_out)?;
        Ok(Rescored {
            certificate: comparison.certificate,
            distance: comparison.distance,
            dissenting: opinions
                .iter()
                .filter(|opinion| !opinion.differs)
                .map(|opinion| opinion.embedder.clone())
                .collect(),
        })
    }

    fn reidentify(&mut self, rows: &[&ReportRow]) -> anyhow::Result<RecomputedRate> {
        let mut paths = HashMap::new();
        let mut listed = Vec::new();
        for row in rows {
            let input = self.input(row)?.clone();
            let output = self
                .outputs
                .get(&row.output_path)
                .with_context(|| format!("output {} not found in --outputs", row.output_path))?
                .clone();
            paths.insert(row.input_path.clone(), (input, output));
            listed.push((*row).clone());
        }
        let reid =
            crate::commands::anonymize::reidentification(&listed, &paths, &mut self.certifier)?;
        Ok(
            reid.map_or(RecomputedRate::NoProbes, |r| RecomputedRate::Rate {
                rate: r.top1_rate,
                chance: r.chance,
            }),
        )
    }

    fn rerun(&mut self, row: &ReportRow) -> anyhow::Result<Vec<u8>> {
        let level = self.policy.level(&row.level)?.clone();
        let strength = row
            .strength
            .with_context(|| format!("{}: the row has no strength", row.input_path))?;
        let seed: [u8; 32] = hex::decode(&row.seed)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .with_context(|| {
                format!(
                    "{}: seed `{}` is not 32 hex bytes",
                    row.input_path, row.seed
                )
            })?;
        let settings = Settings {
            strength,
            ..level_settings(&level)
        };
        let input = dataset::load_image(self.input(row)?)?;
        // The regions are found again as the run found them: the same detector on the same
        // input gives the same boxes.
        let faces = match level.region {
            Region::Faces => render::face_boxes(&self.certifier.analyze(&input.image)?),
            Region::Whole => Vec::new(),
        };
        let limits = render::frame_limits(&self.engine, level.working_megapixels);
        let plan = ImagePlan::new(&input.image, level.region, &faces, limits);
        let (images, _) = render::render(&mut self.engine, &settings, &[&plan], &[seed], 1)?;
        let image = images
            .into_iter()
            .next()
            .context("the rerun rendered no image")?;
        Ok(imageio::encode_png(&image)?)
    }
}
