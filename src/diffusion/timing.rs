//! A stage timer: where a Boomerang run spends its time, and how much of it is outside ONNX Runtime.

use std::fmt;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    TextEncoder,
    VaeEncode,
    Unet,
    Scheduler,
    VaeDecode,
    ImageIo,
}

impl Stage {
    const ALL: [Stage; 6] = [
        Stage::TextEncoder,
        Stage::VaeEncode,
        Stage::Unet,
        Stage::Scheduler,
        Stage::VaeDecode,
        Stage::ImageIo,
    ];

    fn label(self) -> &'static str {
        match self {
            Stage::TextEncoder => "text encoder",
            Stage::VaeEncode => "VAE encode",
            Stage::Unet => "UNet steps",
            Stage::Scheduler => "scheduler",
            Stage::VaeDecode => "VAE decode",
            Stage::ImageIo => "image I/O",
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    total: Duration,
    in_runtime: Duration,
    calls: u32,
}

/// Accumulates wall time per stage, and separately the time spent inside `Session::run`.
#[derive(Debug, Clone)]
pub struct StageTimer {
    tallies: [Tally; 6],
    started: Instant,
    tiling: Tiling,
}

/// How many images ran in tiles, and in how many tiles in all.
#[derive(Debug, Clone, Copy, Default)]
struct Tiling {
    images: u32,
    tiles: u64,
}

impl Default for StageTimer {
    fn default() -> Self {
        Self {
            tallies: [Tally::default(); 6],
            started: Instant::now(),
            tiling: Tiling::default(),
        }
    }
}

impl StageTimer {
    fn tally(&mut self, stage: Stage) -> &mut Tally {
        &mut self.tallies[stage as usize]
    }

    /// Times `work` as one call of `stage`.
    pub fn time<T>(&mut self, stage: Stage, work: impl FnOnce(&mut Self) -> T) -> T {
        let start = Instant::now();
        let result = work(self);
        let tally = self.tally(stage);
        tally.total += start.elapsed();
        tally.calls += 1;
        result
    }

    /// Times an ONNX Runtime call made inside `stage`.
    pub fn runtime_call<T>(&mut self, stage: Stage, work: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let result = work();
        self.tally(stage).in_runtime += start.elapsed();
        result
    }

    /// Adds `other`'s tallies (another worker's), keeping this timer's start as the wall clock's.
    pub fn absorb(&mut self, other: &StageTimer) {
        self.started = self.started.min(other.started);
        for (mine, theirs) in self.tallies.iter_mut().zip(&other.tallies) {
            mine.total += theirs.total;
            mine.in_runtime += theirs.in_runtime;
            mine.calls += theirs.calls;
        }
        self.tiling.images += other.tiling.images;
        self.tiling.tiles += other.tiling.tiles;
    }

    /// Records one image run in `tiles` tiles.
    pub fn count_tiles(&mut self, tiles: usize) {
        self.tiling.images += 1;
        self.tiling.tiles += tiles as u64;
    }

    pub fn report(&self) -> TimingReport {
        let wall = self.started.elapsed();
        let rows = Stage::ALL
            .iter()
            .map(|&stage| {
                let tally = self.tallies[stage as usize];
                (stage.label(), tally.calls, tally.total, tally.in_runtime)
            })
            .collect();
        let in_runtime: Duration = self.tallies.iter().map(|t| t.in_runtime).sum();
        TimingReport {
            rows,
            wall,
            in_runtime,
            tiling: self.tiling,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TimingReport {
    /// Label, calls, wall time, time inside ONNX Runtime.
    rows: Vec<(&'static str, u32, Duration, Duration)>,
    wall: Duration,
    in_runtime: Duration,
    tiling: Tiling,
}

impl TimingReport {
    /// Share of wall time not spent inside ONNX Runtime's `run` (our own overhead plus setup).
    pub fn outside_runtime_share(&self) -> f64 {
        let wall = self.wall.as_secs_f64();
        if wall == 0.0 {
            return 0.0;
        }
        (wall - self.in_runtime.as_secs_f64()).max(0.0) / wall
    }
}

impl fmt::Display for TimingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wall = self.wall.as_secs_f64().max(f64::MIN_POSITIVE);
        writeln!(
            f,
            "{:<14} {:>6} {:>11} {:>11} {:>7}",
            "stage", "calls", "seconds", "in runtime", "share"
        )?;
        for (label, calls, total, in_runtime) in &self.rows {
            let seconds = total.as_secs_f64();
            writeln!(
                f,
                "{label:<14} {calls:>6} {seconds:>11.4} {:>11.4} {:>6.1}%",
                in_runtime.as_secs_f64(),
                100.0 * seconds / wall
            )?;
        }
        writeln!(
            f,
            "{:<14} {:>6} {:>11.4}",
            "wall",
            "",
            self.wall.as_secs_f64()
        )?;
        if self.tiling.images > 0 {
            writeln!(
                f,
                "tiled: {} large image run(s) in {} tiles; a UNet step above covers all tiles of one run",
                self.tiling.images, self.tiling.tiles
            )?;
        }
        write!(
            f,
            "inside ONNX Runtime {:.4} s; outside {:.1}% of wall time",
            self.in_runtime.as_secs_f64(),
            100.0 * self.outside_runtime_share()
        )
    }
}
