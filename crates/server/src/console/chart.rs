//! The overview's chart, drawn on the server as SVG geometry that the template turns into
//! `<rect>` elements: no script and no chart library, so it works under the strict CSP and
//! needs nothing from outside. Hand-written because it is a few bars in a box.

use serde::Serialize;

/// The drawing area, in SVG user units (the SVG scales to its container).
pub const WIDTH: u32 = 720;
/// Height of the bars' area.
pub const HEIGHT: u32 = 160;

/// One bucket: a bar for all requests with the errors' part inside it.
#[derive(Debug, Serialize, PartialEq)]
pub struct Bar {
    /// Left edge.
    pub x: u32,
    /// Width.
    pub width: u32,
    /// Top of the whole bar (requests).
    pub y: u32,
    /// Height of the whole bar.
    pub height: u32,
    /// Top of the errors' part.
    pub error_y: u32,
    /// Height of the errors' part.
    pub error_height: u32,
    /// What a screen reader and a tooltip say.
    pub label: String,
}

/// The bars of `counts` (per bucket: requests, errors), scaled so the largest fills the
/// height; each labelled with `labels[i]` and its numbers.
pub fn bars(counts: &[(u64, u64)], labels: &[String]) -> (Vec<Bar>, u64) {
    let max = counts.iter().map(|(all, _)| *all).max().unwrap_or(0).max(1);
    let n = u32::try_from(counts.len()).unwrap_or(u32::MAX).max(1);
    let slot = WIDTH / n;
    let scale = |v: u64| -> u32 {
        u32::try_from(v.saturating_mul(u64::from(HEIGHT)) / max).unwrap_or(HEIGHT)
    };
    let bars = counts
        .iter()
        .enumerate()
        .map(|(i, (all, errors))| {
            let height = scale(*all);
            let error_height = scale((*errors).min(*all));
            let x = u32::try_from(i).unwrap_or(0) * slot + 1;
            Bar {
                x,
                width: slot.saturating_sub(2).max(1),
                y: HEIGHT - height,
                height,
                error_y: HEIGHT - error_height,
                error_height,
                label: format!(
                    "{}: {all} requests, {errors} errors",
                    labels.get(i).map_or("", String::as_str)
                ),
            }
        })
        .collect();
    (bars, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_bar_fills_the_height_and_errors_sit_inside() {
        let labels: Vec<String> = (0..4).map(|h| format!("{h}:00")).collect();
        let (bars, max) = bars(&[(0, 0), (10, 5), (20, 0), (5, 9)], &labels);
        assert_eq!(max, 20);
        assert_eq!(bars.len(), 4);
        assert_eq!((bars[0].height, bars[0].y), (0, HEIGHT));
        assert_eq!((bars[2].height, bars[2].y), (HEIGHT, 0));
        assert_eq!(bars[1].height, HEIGHT / 2);
        assert_eq!(bars[1].error_height, HEIGHT / 4);
        assert_eq!(bars[3].error_height, bars[3].height, "errors never exceed the bar");
        assert_eq!(bars[1].label, "1:00: 10 requests, 5 errors");
        assert!(bars.windows(2).all(|w| w[0].x + w[0].width < w[1].x + 1));
    }

    #[test]
    fn no_data_draws_empty_bars() {
        let (bars, max) = bars(&[(0, 0); 24], &[]);
        assert_eq!(max, 1);
        assert!(bars.iter().all(|b| b.height == 0));
    }
}
