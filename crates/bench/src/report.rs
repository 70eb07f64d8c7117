//! Figures, their summary over repetitions (median, min, max), the targets of issue 15, the
//! table, and the section of `docs/benchmarks.md` it is written into.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

/// Where a figure stands against its target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// At least this much.
    AtLeast(f64),
    /// At most this much.
    AtMost(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Self::AtLeast(t) => value >= t,
            Self::AtMost(t) => value <= t,
        }
    }

    fn describe(self, unit: &str) -> String {
        match self {
            Self::AtLeast(t) => format!("≥ {} {unit}", number(t)),
            Self::AtMost(t) => format!("≤ {} {unit}", number(t)),
        }
    }
}

/// One row of the table: a figure measured once per repetition.
#[derive(Debug, Clone)]
pub struct Figure {
    pub group: String,
    pub name: String,
    pub unit: String,
    pub values: Vec<f64>,
    pub target: Option<Target>,
    /// The ratio to a machine limit, written after the figure (e.g. "3.1% of PG 4 conns").
    pub ratio: Option<String>,
}

impl Figure {
    pub fn new(group: &str, name: &str, unit: &str) -> Self {
        Self {
            group: group.to_owned(),
            name: name.to_owned(),
            unit: unit.to_owned(),
            values: Vec::new(),
            target: None,
            ratio: None,
        }
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    pub fn median(&self) -> f64 {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.values.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// "met", "MISSED", or "" without a target.
    pub fn verdict(&self) -> &'static str {
        match self.target {
            None => "",
            Some(_) if self.values.is_empty() => "MISSED",
            Some(t) if t.met(self.median()) => "met",
            Some(_) => "MISSED",
        }
    }
}

/// A number as the table shows it: thousands separated, decimals only for small values.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return "-".to_owned();
    }
    if value.abs() < 10.0 && value.fract() != 0.0 {
        return format!("{value:.2}");
    }
    if value.abs() < 100.0 && value.fract() != 0.0 {
        return format!("{value:.1}");
    }
    let rounded = value.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0 { format!("-{out}") } else { out }
}

/// A percentile (`q` in 0..=1) of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// The table (Markdown) of every figure.
pub fn table(figures: &[Figure], repetitions: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| group | figure | median | min | max | unit | ratio to the machine | target | |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- | --- |"
    );
    for figure in figures {
        let (min, max) = if repetitions > 1 && figure.values.len() > 1 {
            (number(figure.min()), number(figure.max()))
        } else {
            ("".to_owned(), "".to_owned())
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            figure.group,
            figure.name,
            number(figure.median()),
            min,
            max,
            figure.unit,
            figure.ratio.as_deref().unwrap_or(""),
            figure
                .target
                .map(|t| t.describe(&figure.unit))
                .unwrap_or_default(),
            figure.verdict(),
        );
    }
    out
}

pub const BEGIN: &str =
    "<!-- wmslink-bench:begin (written by `wmslink-bench`; edits here are replaced) -->";
pub const END: &str = "<!-- wmslink-bench:end -->";

/// Replaces the marked section of `path` with `section`, or puts it after the first heading
/// when there is none yet; everything else in the file stays.
pub fn write_section(path: &Path, section: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    let block = format!("{BEGIN}\n{}\n{END}", section.trim_end());
    let updated = match (text.find(BEGIN), text.find(END)) {
        (Some(begin), Some(end)) if end > begin => {
            format!("{}{block}{}", &text[..begin], &text[end + END.len()..])
        }
        _ => match text.find("\n## ") {
            Some(at) => format!("{}\n{block}\n{}", &text[..at + 1], &text[at + 1..]),
            None => format!("{}\n\n{block}\n", text.trim_end()),
        },
    };
    std::fs::write(path, updated).with_context(|| format!("writing {path:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max_of_repetitions() {
        let mut figure = Figure::new("g", "f", "x");
        figure.values = vec![3.0, 1.0, 2.0, 10.0];
        assert_eq!(figure.median(), 2.5);
        assert_eq!(figure.min(), 1.0);
        assert_eq!(figure.max(), 10.0);
    }

    #[test]
    fn a_missed_target_says_so() {
        let mut figure = Figure::new("g", "f", "orders/s").target(Target::AtLeast(2_000.0));
        figure.values = vec![66.0];
        assert_eq!(figure.verdict(), "MISSED");
        figure.values = vec![2_500.0];
        assert_eq!(figure.verdict(), "met");
        let none = Figure::new("g", "f", "x").target(Target::AtMost(1.0));
        assert_eq!(none.verdict(), "MISSED");
    }

    #[test]
    fn numbers_read_as_in_the_docs() {
        assert_eq!(number(98_123.4), "98,123");
        assert_eq!(number(1.234), "1.23");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(100.0), "100");
    }

    #[test]
    fn the_section_is_replaced_and_the_rest_kept() {
        let dir = std::env::temp_dir().join(format!("bench-doc-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("b.md");
        std::fs::write(&path, "# Benchmarks\n\nintro\n\n## Old one\n\nold table\n").expect("w");
        write_section(&path, "first").expect("write");
        write_section(&path, "second").expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("second") && !text.contains("first"), "{text}");
        assert!(text.contains("## Old one\n\nold table"), "{text}");
        assert!(text.find(BEGIN) < text.find("## Old one"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
