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
    /// The first call of a stage pays each session's one-time work (a GPU provider's kernel
    /// search, TensorRT's engine build); the steady rate is the rest. Summed over workers.
    first: Duration,
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
        let elapsed = start.elapsed();
        let tally = self.tally(stage);
        if tally.calls == 0 {
            tally.first = elapsed;
        }
        tally.total += elapsed;
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
            mine.first += theirs.first;
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
                (stage.label(), tally)
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
    /// Each stage's label and tally.
    rows: Vec<(&'static str, Tally)>,
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
            "{:<14} {:>6} {:>11} {:>11} {:>7} {:>11}",
            "stage", "calls", "seconds", "in runtime", "share", "first call"
        )?;
        for (label, row) in &self.rows {
            let seconds = row.total.as_secs_f64();
            writeln!(
                f,
                "{:<14} {:>6} {seconds:>11.4} {:>11.4} {:>6.1}% {:>11.4}",
                label,
                row.calls,
                row.in_runtime.as_secs_f64(),
                100.0 * seconds / wall,
                row.first.as_secs_f64()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn unet_row(report: &TimingReport) -> Tally {
        let found = report.rows.iter().find(|(label, _)| *label == "UNet steps");
        found.unwrap().1
    }

    #[test]
    fn the_first_call_of_a_stage_is_kept_apart_and_summed_over_workers() {
        let mut worker = StageTimer::default();
        // A slow first call (a session's one-time work), then fast ones.
        worker.time(Stage::Unet, |_| {
            std::thread::sleep(Duration::from_millis(30))
        });
        for _ in 0..3 {
            worker.time(Stage::Unet, |_| ());
        }
        let report = worker.report();
        let row = unet_row(&report);
        assert_eq!(row.calls, 4);
        assert!(row.first >= Duration::from_millis(30), "{:?}", row.first);
        assert!(row.total - row.first < Duration::from_millis(30), "{row:?}");
        let text = report.to_string();
        assert!(
            text.lines().next().unwrap().ends_with("first call"),
            "{text}"
        );
        let printed = text.lines().find(|l| l.starts_with("UNet steps")).unwrap();
        let first: f64 = printed.split_whitespace().last().unwrap().parse().unwrap();
        assert_eq!(
            first,
            (row.first.as_secs_f64() * 1e4).round() / 1e4,
            "{printed}"
        );

        let mut other = StageTimer::default();
        other.time(Stage::Unet, |_| {
            std::thread::sleep(Duration::from_millis(20))
        });
        let mut both = worker.clone();
        both.absorb(&other);
        let summed = unet_row(&both.report()).first;
        assert!(summed >= Duration::from_millis(50), "{summed:?}");
        assert_eq!(unet_row(&both.report()).calls, 5);
    }
}
