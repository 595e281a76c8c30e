//! The soak's samples as a PNG: four panels over the minutes (RSS, CPU, open files and
//! threads, refresh time), each from 0 so that a flat line looks flat.

use std::path::Path;

use anyhow::{anyhow, Context as _, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::report::{Sample, Soak};

/// Debian's fonts-dejavu-core (setup installs it): the plot's text.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// A line: its name, colour, and its value in a sample.
type Series = (&'static str, RGBColor, fn(&Sample) -> f64);

/// One panel: its title (with the unit) and its lines.
struct Panel {
    title: &'static str,
    series: Vec<Series>,
}

/// Writes `soak`'s samples to `path` (PNG, 1200 x 1000).
pub fn write(soak: &Soak, path: &Path) -> Result<()> {
    let font = std::fs::read(FONT).with_context(|| format!("read {FONT}"))?;
    register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow!("{FONT} is not a font"))?;
    let root = BitMapBackend::new(path, (1200, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(draw)?;
    let (title, body) = root.split_vertically(50);
    title
        .titled(
            &format!(
                "tcptrack soak: {} minutes, {} held connections + {} a second (kernel path, screen, metrics, flow log)",
                soak.minutes, soak.held, soak.rate
            ),
            ("sans-serif", 20),
        )
        .map_err(draw)?;
    let panels = [
        Panel {
            title: "RSS (MiB)",
            #[expect(clippy::cast_precision_loss, reason = "a plot")]
            series: vec![("RSS", BLUE, |s| s.rss_kib as f64 / 1024.0)],
        },
        Panel {
            title: "CPU (% of one core, each 10 s)",
            series: vec![("CPU", RED, |s| s.cpu_percent)],
        },
        Panel {
            title: "open files and threads",
            #[expect(clippy::cast_precision_loss, reason = "a plot")]
            series: vec![
                ("open files", GREEN, |s| s.open_files as f64),
                ("threads", MAGENTA, |s| s.threads as f64),
            ],
        },
        Panel {
            title: "refresh (ms, mean of each 10 s)",
            series: vec![("refresh", BLACK, |s| s.refresh_ms)],
        },
    ];
    #[expect(clippy::cast_precision_loss, reason = "a plot")]
    let minutes = (soak.samples.last().map_or(1, |s| s.seconds) as f64 / 60.0).max(1.0);
    for (area, panel) in body.split_evenly((4, 1)).iter().zip(&panels) {
        draw_panel(area, panel, &soak.samples, minutes)?;
    }
    root.present().map_err(draw)?;
    Ok(())
}

/// `panel` of `samples` in `area`, over `minutes`.
fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
    samples: &[Sample],
    minutes: f64,
) -> Result<()> {
    let top = panel
        .series
        .iter()
        .flat_map(|(_, _, value)| samples.iter().map(value))
        .fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.2 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..minutes, 0.0..top)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(draw)?;
    for &(name, color, value) in &panel.series {
        #[expect(clippy::cast_precision_loss, reason = "a plot")]
        let points = samples.iter().map(|s| (s.seconds as f64 / 60.0, value(s)));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(draw)?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(draw)?;
    Ok(())
}

/// A drawing error, as text (plotters' errors borrow the backend's).
fn draw<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("draw the soak's plot: {e:?}")
}
