//! The chart (docs/bench.png): one horizontal bar panel per result key,
//! every system a bar of its absolute value, labelled with the value and
//! its ratio to the scenario's baseline. Panels whose values span more than
//! 30x use a log scale. Text needs a TrueType font, registered at run time
//! from a system path; without one the chart is skipped.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, SegmentValue, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::numbers::{number, unit};
use crate::report::{baseline, ratio, times};
use crate::scenarios::{KEYS, Results};
use crate::systems::SYSTEMS;

/// Where fonts are looked for, first the variable `SWITCHBOARD_BENCH_FONT`.
const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

const FONT: &str = "sans-serif";

/// Registers a TrueType font as plotters' `sans-serif`.
fn register_font() -> Result<PathBuf> {
    let candidates = std::env::var_os("SWITCHBOARD_BENCH_FONT")
        .map(PathBuf::from)
        .into_iter()
        .chain(FONT_PATHS.iter().map(PathBuf::from));
    for path in candidates {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        // plotters keeps fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok() {
            return Ok(path);
        }
    }
    Err(anyhow!(
        "no TrueType font found (tried $SWITCHBOARD_BENCH_FONT and {}); install fonts-dejavu-core",
        FONT_PATHS.join(", ")
    ))
}

fn color(system: &str) -> RGBColor {
    match system {
        "raw_blocking_uds" => RGBColor(110, 110, 110),
        "raw_tokio_local" => RGBColor(165, 165, 165),
        "raw_poll_uds" => RGBColor(190, 190, 190),
        "raw_spin_shm" => RGBColor(215, 215, 215),
        "switchboard_local" => RGBColor(214, 39, 40),
        "switchboard_local_json" => RGBColor(31, 119, 180),
        "switchboard_local_msgpack" => RGBColor(100, 170, 225),
        "switchboard_shm" => RGBColor(227, 119, 194),
        "iceoryx2_rr" => RGBColor(140, 86, 75),
        "switchboard_tcp_json" => RGBColor(20, 60, 120),
        "switchboard_blocking" => RGBColor(23, 190, 207),
        "tarpc_uds" => RGBColor(255, 127, 14),
        "ipc_channel" => RGBColor(44, 160, 44),
        _ => RGBColor(148, 103, 189),
    }
}

/// Draws the chart into `path` (PNG). `title` heads the image.
pub fn draw(results: &Results, path: &Path, title: &str) -> Result<()> {
    let font = register_font()?;
    eprintln!("chart: font {}", font.display());
    let root = BitMapBackend::new(path, (1600, 1200)).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(60);
    head.draw(&Text::new(
        title.to_owned(),
        (20, 18),
        (FONT, 22).into_font().color(&BLACK),
    ))?;
    for (area, key) in body.split_evenly((3, 2)).iter().zip(KEYS) {
        panel(area, results, key)?;
    }
    root.present()?;
    Ok(())
}

/// One bar of a panel.
struct Bar {
    system: &'static str,
    value: Option<f64>,
    label: String,
}

fn panel(area: &DrawingArea<BitMapBackend<'_>, Shift>, results: &Results, key: &str) -> Result<()> {
    let bars: Vec<Bar> = SYSTEMS
        .iter()
        .map(|&system| {
            let value = results.get(key, system);
            let label = match (value, ratio(results, key, system)) {
                (None, _) => "absent".to_string(),
                (Some(v), _) if system == baseline(key) => format!("{} (baseline)", number(v)),
                (Some(v), Some(r)) => format!("{} ({})", number(v), times(r)),
                (Some(v), None) => number(v),
            };
            Bar {
                system,
                value,
                label,
            }
        })
        .collect();
    let present: Vec<f64> = bars
        .iter()
        .filter_map(|b| b.value)
        .filter(|v| *v > 0.0)
        .collect();
    let max = present.iter().copied().fold(f64::MIN_POSITIVE, f64::max);
    let min = present.iter().copied().fold(max, f64::min);
    let (unit, direction) = unit(key);
    let unit = if unit == "us" { "µs" } else { unit };
    let caption = format!("{key} ({unit}, {direction})");
    if max / min > 30.0 {
        let low = min / 3.0;
        bars_on(area, &caption, (low..max * 8.0).log_scale(), low, &bars)
    } else {
        bars_on(area, &caption, 0.0..max * 1.45, 0.0, &bars)
    }
}

/// Draws `bars` on an x axis `x` (linear or log) starting at `origin`.
fn bars_on<X>(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    caption: &str,
    x: X,
    origin: f64,
    bars: &[Bar],
) -> Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let n = bars.len();
    // Segment 0 is at the bottom: put the first system on top.
    let row = |i: usize| n - 1 - i;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 19))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(200)
        .build_cartesian_2d(x, (0..n - 1).into_segmented())?;
    let names = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(r) if *r < n => bars[n - 1 - r].system.to_string(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .y_labels(n)
        .y_label_formatter(&names)
        .x_labels(6)
        .x_label_formatter(&|v| number(*v))
        .label_style((FONT, 14))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().filter_map(|(i, bar)| {
        let value = bar.value?;
        let mut rect = Rectangle::new(
            [
                (origin, SegmentValue::Exact(row(i))),
                (value, SegmentValue::Exact(row(i) + 1)),
            ],
            color(bar.system).filled(),
        );
        rect.set_margin(3, 3, 0, 0);
        Some(rect)
    }))?;
    let style = (FONT, 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    chart.draw_series(bars.iter().enumerate().map(|(i, bar)| {
        Text::new(
            format!("  {}", bar.label),
            (bar.value.unwrap_or(origin), SegmentValue::CenterOf(row(i))),
            style.clone(),
        )
    }))?;
    Ok(())
}
