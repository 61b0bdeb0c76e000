//! What the proxy has counted so far, read from its own `/metrics`
//! rendering, and the progress line the demo prints from it.
//!
//! The demo reads the same numbers an operator's Prometheus scrapes, so
//! what it prints can be checked against `/metrics` at any time.

use crate::observability::metrics::{
    COMPARISONS_TOTAL, INCIDENTS_OPEN, QUERIES_TOTAL, QUEUE_DEPTH, SKIPPED_TOTAL,
};
use std::collections::BTreeMap;
use std::fmt::Write;

/// One reading of the proxy's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Statements the application executed through the proxy.
    pub queries: u64,
    /// Comparisons by result (`match`, `mismatch`, `new_error`, …).
    pub comparisons: BTreeMap<String, u64>,
    /// Statements not compared, by reason (`not_sampled`, `not_read`, …).
    pub skipped: BTreeMap<String, u64>,
    /// Samples waiting for a shadow worker.
    pub queue_depth: u64,
    /// Incidents open in the mismatch store.
    pub incidents_open: u64,
}

impl Counts {
    /// Reads the counters from Prometheus text (what `/metrics` serves).
    pub fn parse(text: &str) -> Counts {
        let mut counts = Counts::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            // Counters are whole numbers rendered as floats.
            let value = value.max(0.0) as u64;
            let (name, label) = match series.split_once('{') {
                Some((name, labels)) => (name, label_value(labels)),
                None => (series, None),
            };
            match (name, label) {
                (n, _) if n == QUERIES_TOTAL => counts.queries = value,
                (n, _) if n == QUEUE_DEPTH => counts.queue_depth = value,
                (n, _) if n == INCIDENTS_OPEN => counts.incidents_open = value,
                (n, Some(result)) if n == COMPARISONS_TOTAL => {
                    counts.comparisons.insert(result, value);
                }
                (n, Some(reason)) if n == SKIPPED_TOTAL => {
                    counts.skipped.insert(reason, value);
                }
                _ => {}
            }
        }
        counts
    }

    /// Comparisons finished, whatever their result.
    pub fn compared(&self) -> u64 {
        self.comparisons.values().sum()
    }

    /// Comparisons whose results matched.
    pub fn matched(&self) -> u64 {
        self.result("match")
    }

    /// Comparisons whose results differed.
    pub fn mismatched(&self) -> u64 {
        self.result("mismatch")
    }

    /// Comparisons that ended in an error of either side, a timeout or a
    /// shadow failure.
    pub fn errors(&self) -> u64 {
        self.compared() - self.matched() - self.mismatched()
    }

    /// Statements not compared, for any reason.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// The number of comparisons with one result.
    pub fn result(&self, result: &str) -> u64 {
        self.comparisons.get(result).copied().unwrap_or(0)
    }

    /// `not_sampled 812, not_read 301`: the non-zero skip reasons, most
    /// frequent first.
    pub fn skip_reasons(&self) -> String {
        let mut reasons: Vec<(&String, &u64)> =
            self.skipped.iter().filter(|(_, n)| **n > 0).collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = reasons
            .iter()
            .map(|(reason, n)| format!("{reason} {}", thousands(**n)))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    /// The progress line printed every two seconds, `at` being the time
    /// into the run (`  4s`) or `done`.
    pub fn progress_line(&self, at: &str) -> String {
        let mut line = format!(
            "  [{at:>4}] queries {:>7}  compared {:>6}  matched {:>6}  mismatched {:>4}",
            thousands(self.queries),
            thousands(self.compared()),
            thousands(self.matched()),
            thousands(self.mismatched()),
        );
        if self.errors() > 0 {
            let _ = write!(line, "  errors {}", thousands(self.errors()));
        }
        let _ = write!(
            line,
            "  skipped {:>7}  incidents {}",
            thousands(self.skipped_total()),
            self.incidents_open
        );
        line
    }
}

/// The value of the first label in `result="match"}`.
fn label_value(labels: &str) -> Option<String> {
    let (_, rest) = labels.split_once("=\"")?;
    let (value, _) = rest.split_once('"')?;
    Some(value.to_string())
}

/// `12345` as `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "\
# HELP pgshadow_queries_total Statements executed by clients.
# TYPE pgshadow_queries_total counter
pgshadow_queries_total 1500
pgshadow_comparisons_total{result=\"match\"} 400
pgshadow_comparisons_total{result=\"mismatch\"} 12
pgshadow_comparisons_total{result=\"new_error\"} 1
pgshadow_skipped_total{reason=\"not_sampled\"} 900
pgshadow_skipped_total{reason=\"not_read\"} 187
pgshadow_skipped_total{reason=\"queue_full\"} 0
pgshadow_queue_depth 3
pgshadow_incidents_open 2
pgshadow_shadow_duration_seconds_bucket{side=\"old\",le=\"0.001\"} 7
";

    #[test]
    fn a_scrape_is_read_into_counts() {
        let c = Counts::parse(SCRAPE);
        assert_eq!(c.queries, 1500);
        assert_eq!(c.compared(), 413);
        assert_eq!(c.matched(), 400);
        assert_eq!(c.mismatched(), 12);
        assert_eq!(c.errors(), 1);
        assert_eq!(c.skipped_total(), 1087);
        assert_eq!(c.queue_depth, 3);
        assert_eq!(c.incidents_open, 2);
        assert_eq!(c.skip_reasons(), "not_sampled 900, not_read 187");
    }

    #[test]
    fn the_progress_line_names_every_count() {
        let line = Counts::parse(SCRAPE).progress_line("4s");
        for part in [
            "[  4s]",
            "queries   1,500",
            "compared    413",
            "matched    400",
            "mismatched   12",
            "errors 1",
            "skipped   1,087",
            "incidents 2",
        ] {
            assert!(line.contains(part), "{part:?} not in {line:?}");
        }
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
