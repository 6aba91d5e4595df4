//! The two SVG charts, drawn with plotters' SVG backend (no fonts are loaded: text sizes are
//! estimated, and the viewer draws the text).

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::runs::{Run, SERVERS, server_rank};

const SIZE: (u32, u32) = (960, 600);

/// One colour per rate, in ladder order (Tableau 10: distinct, and none too pale on white).
const RATE_COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// The highest "nines" the CDF shows: p99.99.
const NINES: f64 = 4.0;

fn failed(what: &str) -> impl Fn(DrawingAreaErrorKind<std::io::Error>) -> String + '_ {
    move |error| format!("cannot draw the {what}: {error}")
}

/// A percentile as its number of nines: p90 is 1, p99 2, p99.9 3.
fn nines(percentile: f64) -> f64 {
    (-(1.0 - percentile / 100.0).log10()).min(NINES)
}

/// The percentile a number of nines stands for, as an axis label.
fn percentile_label(nines: f64) -> String {
    let percentile = 100.0 * (1.0 - 10f64.powf(-nines));
    let text = format!("{percentile:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("p{text}")
}

fn title(root: &DrawingArea<SVGBackend<'_>, Shift>, text: &str, caption: &str) -> Result<(), String> {
    root.fill(&WHITE).map_err(failed("background"))?;
    let style = ("sans-serif", 20).into_font().color(&BLACK);
    root.draw_text(text, &style, (20, 12)).map_err(failed("title"))?;
    let small = ("sans-serif", 13).into_font().color(&RGBColor(90, 90, 90));
    root.draw_text(caption, &small, (20, 38)).map_err(failed("caption"))?;
    Ok(())
}

/// The whole decades around `low..high` (with some room), so a log axis is labelled 1, 10, 100…
fn decades(low: f64, high: f64) -> (f64, f64) {
    (10f64.powf((low / 1.3).log10().floor()), 10f64.powf((high * 1.3).log10().ceil()))
}

/// A colour per server in the throughput chart, in the order of `SERVERS`.
const SERVER_COLOURS: [RGBColor; 3] = [RGBColor(200, 60, 40), RGBColor(40, 90, 200), RGBColor(30, 140, 70)];

/// Runs in the order they are drawn: by rate, then herald, the reference, Centrifugo.
fn ordered(runs: &[Run]) -> Vec<&Run> {
    let mut ordered: Vec<&Run> = runs.iter().collect();
    ordered.sort_by(|a, b| {
        a.target_rate.total_cmp(&b.target_rate).then_with(|| server_rank(&a.server).cmp(&server_rank(&b.server)))
    });
    ordered
}

/// Latency of every run: x is ms (log), y the percentile in nines.
pub(crate) fn latency_cdf(runs: &[Run], caption: &str) -> Result<String, String> {
    let points = |run: &Run| -> Vec<(f64, f64)> {
        run.cdf.iter().filter(|point| point[0] < 100.0).map(|point| (point[1].max(0.01), nines(point[0]))).collect()
    };
    let all: Vec<f64> = runs.iter().flat_map(|run| points(run).into_iter().map(|(ms, _)| ms)).collect();
    let low = all.iter().copied().fold(f64::INFINITY, f64::min);
    let high = all.iter().copied().fold(0.0, f64::max);
    let (low, high) = if all.is_empty() { (0.1, 100.0) } else { decades(low, high) };
    let mut rates: Vec<f64> = runs.iter().map(|run| run.target_rate).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let heading = if runs.iter().any(|run| run.server == SERVERS[2]) {
            "Latency, produce → socket: herald (solid), the reference server (dashed), Centrifugo (dotted)"
        } else {
            "Latency, produce → socket: herald (solid) and the reference server (dashed)"
        };
        title(&root, heading, caption)?;
        let area = root.margin(60, 10, 10, 20);
        let mut chart = ChartBuilder::on(&area)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((low..high).log_scale(), 0.0..NINES)
            .map_err(failed("latency chart"))?;
        chart
            .configure_mesh()
            .x_desc("latency, ms (log scale)")
            .y_desc("share of copies delivered within")
            .y_labels(5)
            .y_label_formatter(&|nines| percentile_label(*nines))
            .x_label_formatter(&|ms| format!("{ms}"))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(failed("latency axes"))?;
        for run in ordered(runs) {
            let rank = rates.iter().position(|rate| *rate == run.target_rate).unwrap_or(0);
            let colour = RATE_COLOURS[rank % RATE_COLOURS.len()];
            let style = colour.stroke_width(2);
            let label =
                format!("{} at {}/s{}", run.server, run.target_rate, if run.saturated { " (saturated)" } else { "" });
            let legend_style = style;
            match server_rank(&run.server) {
                0 => chart.draw_series(LineSeries::new(points(run), style)),
                1 => chart.draw_series(DashedLineSeries::new(points(run), 8, 5, style)),
                _ => chart.draw_series(DashedLineSeries::new(points(run), 2, 4, style)),
            }
            .map_err(failed("latency line"))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], legend_style));
        }
        chart
            .configure_series_labels()
            // Tails (p99 and up) are never under a millisecond here: the upper left stays free.
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(failed("latency legend"))?;
        root.present().map_err(failed("latency chart"))?;
    }
    Ok(svg)
}

/// p99 (log ms) against the rate achieved, a line per server; saturated runs are crosses.
pub(crate) fn throughput_p99(runs: &[Run], max_p99_ms: f64, caption: &str) -> Result<String, String> {
    let measured: Vec<&Run> = runs.iter().filter(|run| run.p99_ms.is_some()).collect();
    let high_rate = measured.iter().map(|run| run.achieved_rate).fold(1.0, f64::max) * 1.1;
    let p99s: Vec<f64> = measured.iter().filter_map(|run| run.p99_ms).map(|ms| ms.max(0.01)).collect();
    let (low, high) =
        decades(p99s.iter().copied().fold(max_p99_ms, f64::min), p99s.iter().copied().fold(max_p99_ms, f64::max));

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        title(&root, "p99 latency against throughput, by server", caption)?;
        let area = root.margin(60, 10, 10, 20);
        let mut chart = ChartBuilder::on(&area)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..high_rate, (low..high).log_scale())
            .map_err(failed("throughput chart"))?;
        chart
            .configure_mesh()
            .x_desc("events per second produced (each to one user's sockets)")
            .y_desc("p99 produce → socket, ms (log scale)")
            .y_label_formatter(&|ms| format!("{ms}"))
            .x_label_formatter(&|rate| format!("{rate:.0}"))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(failed("throughput axes"))?;
        let limit_style = RGBColor(160, 160, 160).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new([(0.0, max_p99_ms), (high_rate, max_p99_ms)], 6, 6, limit_style))
            .map_err(failed("saturation line"))?
            .label(format!("saturation: p99 over {max_p99_ms} ms or a copy lost"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], limit_style));
        for (index, server) in SERVERS.iter().enumerate() {
            let mut own: Vec<&Run> = measured.iter().copied().filter(|run| run.server == *server).collect();
            if own.is_empty() {
                continue;
            }
            own.sort_by(|a, b| a.target_rate.total_cmp(&b.target_rate));
            let colour = SERVER_COLOURS[index % SERVER_COLOURS.len()];
            let style = colour.stroke_width(2);
            let line: Vec<(f64, f64)> =
                own.iter().filter_map(|run| run.p99_ms.map(|ms| (run.achieved_rate, ms.max(0.01)))).collect();
            chart
                .draw_series(LineSeries::new(line, style))
                .map_err(failed("throughput line"))?
                .label(*server)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            for run in own {
                let Some(p99) = run.p99_ms else { continue };
                let at = (run.achieved_rate, p99.max(0.01));
                if run.saturated {
                    chart
                        .draw_series([Cross::new(at, 7, colour.stroke_width(2))])
                        .map_err(failed("saturated point"))?;
                } else {
                    chart.draw_series([Circle::new(at, 5, colour.filled())]).map_err(failed("point"))?;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(failed("throughput legend"))?;
        root.present().map_err(failed("throughput chart"))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axes_span_whole_decades() {
        assert_eq!(decades(3.0, 47.0), (1.0, 100.0));
        assert_eq!(decades(0.5, 1000.0), (0.1, 10_000.0));
    }

    #[test]
    fn nines_and_their_labels() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert_eq!(nines(100.0), NINES);
        assert_eq!(percentile_label(0.0), "p0");
        assert_eq!(percentile_label(1.0), "p90");
        assert_eq!(percentile_label(3.0), "p99.9");
        assert_eq!(percentile_label(4.0), "p99.99");
    }

    #[test]
    fn both_charts_are_svg_with_every_run() {
        let run = |server: &str, rate: f64, saturated: bool| Run {
            server: server.to_owned(),
            target_rate: rate,
            achieved_rate: rate,
            expected: 10,
            received: 10,
            lost: 0,
            p50_ms: Some(1.0),
            p99_ms: Some(if saturated { 2000.0 } else { 5.0 }),
            cdf: vec![[0.0, 0.5], [50.0, 1.0], [99.0, 5.0], [99.99, 9.0], [100.0, 12.0]],
            cpu_us_per_event: Some(10.0),
            rss_kib_per_idle_socket: Some(8.0),
            redis_cpu_us_per_event: None,
            saturated,
        };
        let runs = [
            run("herald", 1000.0, false),
            run("reference", 1000.0, false),
            run("centrifugo", 1000.0, false),
            run("herald", 5000.0, true),
        ];
        let cdf = latency_cdf(&runs, "a caption").unwrap();
        assert!(cdf.starts_with("<svg") && cdf.contains("herald at 5000/s (saturated)") && cdf.contains("a caption"));
        assert!(cdf.contains("centrifugo at 1000/s") && cdf.contains("Centrifugo (dotted)"));
        let throughput = throughput_p99(&runs, 1000.0, "").unwrap();
        assert!(
            throughput.starts_with("<svg") && throughput.contains("reference") && throughput.contains("centrifugo")
        );
    }
}
