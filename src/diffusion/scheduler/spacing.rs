//! Inference timesteps as diffusers' `set_timesteps` builds them with numpy, including numpy's
//! float `arange` length rule and round-half-to-even, which decide the exact integers.

use super::config::TimestepSpacing;

/// `np.arange(start, stop, step)` with float arguments: `ceil((stop - start) / step)` values,
/// the second `start + step`, the rest `start + i * delta` with `delta = (start + step) - start`.
fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    let len = if len > 0.0 { len as usize } else { 0 };
    let delta = (start + step) - start;
    (0..len)
        .map(|i| match i {
            0 => start,
            1 => start + step,
            _ => start + i as f64 * delta,
        })
        .collect()
}

/// `np.linspace(start, stop, num)` (endpoint included) in float64.
fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut y: Vec<f64> = (0..num)
        .map(|i| {
            if step == 0.0 {
                i as f64 / div * delta + start
            } else {
                i as f64 * step + start
            }
        })
        .collect();
    if let Some(last) = y.last_mut() {
        *last = stop;
    }
    y
}

/// `np.round`: halves go to the even neighbour.
fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// Descending integer timesteps of DDIM and DDPM (`set_timesteps`), possibly out of range for
/// large `steps_offset`; the caller validates.
pub fn integer_descending(
    spacing: TimestepSpacing,
    train: usize,
    steps: usize,
    offset: usize,
) -> Vec<i64> {
    match spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (train - 1) as f64, steps)
            .into_iter()
            .rev()
            .map(|t| np_round(t) as i64)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = train / steps;
            (0..steps)
                .rev()
                .map(|i| (i * ratio + offset) as i64)
                .collect()
        }
        TimestepSpacing::Trailing => trailing(train, steps)
            .into_iter()
            .map(|t| np_round(t) as i64 - 1)
            .collect(),
    }
}

/// PNDM's ascending `_timesteps`, before its PRK/PLMS arrangement: the DDIM/DDPM schedule in
/// ascending order.
pub fn pndm_ascending(
    spacing: TimestepSpacing,
    train: usize,
    steps: usize,
    offset: usize,
) -> Vec<i64> {
    let mut timesteps = integer_descending(spacing, train, steps, offset);
    timesteps.reverse();
    timesteps
}

/// Euler's descending float32 timesteps (fractional for `linspace`).
pub fn float_descending(
    spacing: TimestepSpacing,
    train: usize,
    steps: usize,
    offset: usize,
) -> Vec<f32> {
    match spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (train - 1) as f64, steps)
            .into_iter()
            .rev()
            .map(|t| t as f32)
            .collect(),
        // Whole numbers below 2^24 (far above any training schedule), exact in float32: the
        // same values as computing them in float32.
        TimestepSpacing::Leading | TimestepSpacing::Trailing => {
            integer_descending(spacing, train, steps, offset)
                .into_iter()
                .map(|t| t as f32)
                .collect()
        }
    }
}

/// `np.arange(train, 0, -train / steps)`: descending, usually `steps` values, occasionally one
/// more when the float step lands just short.
fn trailing(train: usize, steps: usize) -> Vec<f64> {
    np_arange(train as f64, 0.0, -(train as f64 / steps as f64))
}

/// `np.interp(x, [0, 1, ..., n-1], fp)` in float64.
pub fn interp_unit_grid(x: f64, fp: &[f64]) -> f64 {
    let (Some(&first), Some(&last)) = (fp.first(), fp.last()) else {
        return f64::NAN;
    };
    let n = fp.len();
    if x > (n - 1) as f64 {
        return last;
    }
    if x < 0.0 {
        return first;
    }
    let j = x.floor() as usize;
    if j >= n - 1 || j as f64 == x {
        return fp[j];
    }
    let slope = fp[j + 1] - fp[j];
    let y = slope * (x - j as f64) + fp[j];
    if y.is_nan() {
        let y = slope * (x - (j + 1) as f64) + fp[j + 1];
        if y.is_nan() && fp[j] == fp[j + 1] {
            return fp[j];
        }
        return y;
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_rounding_and_lengths() {
        // 1000 / 16 = 62.5: halves round to even, as numpy does.
        let t = integer_descending(TimestepSpacing::Trailing, 1000, 16, 0);
        assert_eq!(t.len(), 16);
        assert_eq!(&t[..3], &[999, 937, 874]);
        assert_eq!(np_linspace(0.0, 999.0, 3), vec![0.0, 499.5, 999.0]);
        assert_eq!(
            integer_descending(TimestepSpacing::Linspace, 1000, 3, 0),
            vec![999, 500, 0]
        );
    }

    #[test]
    fn interp_matches_numpy_edges() {
        let fp = [0.0, 10.0, 30.0];
        assert_eq!(interp_unit_grid(-1.0, &fp), 0.0);
        assert_eq!(interp_unit_grid(0.5, &fp), 5.0);
        assert_eq!(interp_unit_grid(1.25, &fp), 15.0);
        assert_eq!(interp_unit_grid(2.0, &fp), 30.0);
        assert_eq!(interp_unit_grid(7.0, &fp), 30.0);
    }
}
