//! What the query's ORDER BY promises, and how rows were matched under it.
//!
//! [`Ordering`] comes from the rewriter; [`RowOrder`] is what the diff,
//! the outcome, the store and the logs call the matching that was done.

use serde::{Deserialize, Serialize};

/// One ORDER BY key, as far as it can be found in the query's output.
///
/// The diff resolves these against the RowDescription it receives, so the
/// rewriter does not need to know what `*` expands to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SortKey {
    /// `ORDER BY 2`: the 1-based output column.
    Ordinal(usize),
    /// `ORDER BY updated_at` / `ORDER BY e.updated_at`: the output column
    /// with this name (unquoted names lowercased, as Postgres reports them).
    Name(String),
    /// An expression that is not an output column (`ORDER BY lower(x)`).
    Unknown,
}

/// How the rows of a comparison were matched: the `ordering` of a [`Diff`],
/// of an outcome, of a stored example, and of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowOrder {
    /// A total order: rows compared by position.
    Total,
    /// An order that leaves ties: rows compared as multisets within each run
    /// of equal sort keys.
    TieRuns,
    /// No ORDER BY: rows compared as multisets.
    Unordered,
    /// An ORDER BY that leaves ties and whose first sort key is not an
    /// output column: rows compared as multisets, the order not checked.
    OrderUnverified,
}

impl RowOrder {
    /// Every kind, for parsing.
    pub const ALL: [RowOrder; 4] = [
        RowOrder::Total,
        RowOrder::TieRuns,
        RowOrder::Unordered,
        RowOrder::OrderUnverified,
    ];

    /// The label in logs and the store: `total`, `tie_runs`, `unordered`,
    /// `order_unverified`.
    pub fn label(self) -> &'static str {
        match self {
            RowOrder::Total => "total",
            RowOrder::TieRuns => "tie_runs",
            RowOrder::Unordered => "unordered",
            RowOrder::OrderUnverified => "order_unverified",
        }
    }

    /// Parses a label (the store's read side).
    pub fn parse(label: &str) -> Option<RowOrder> {
        Self::ALL.into_iter().find(|o| o.label() == label)
    }

    /// How the rows of `ordering` are compared before sort keys are
    /// resolved against the columns (results whose columns already differ).
    pub fn of(ordering: &Ordering) -> RowOrder {
        match ordering {
            Ordering::Unordered => RowOrder::Unordered,
            Ordering::Ordered { total: true, .. } => RowOrder::Total,
            Ordering::Ordered { total: false, .. } => RowOrder::TieRuns,
        }
    }
}

/// How the rows of a result are ordered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ordering {
    /// No ORDER BY: rows are compared as multisets.
    Unordered,
    /// An ORDER BY on the outermost query.
    Ordered {
        /// The sort keys, in order (the tiebreaker last when appended).
        keys: Vec<SortKey>,
        /// The keys identify every row (every relation's key was appended,
        /// or the query already ended in them): rows are compared by
        /// position. Otherwise rows with equal keys may come in any order
        /// and are compared as multisets within each run of equal keys.
        total: bool,
        /// OFFSET skips rows before the page: with a partial order which
        /// of the tied rows of the first run made it onto the page is up to
        /// the plan, so that run is compared by its keys and row count.
        offset: bool,
        /// LIMIT/FETCH ends the page: the same for the last run.
        limit: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::RowOrder;

    #[test]
    fn row_order_labels_parse_back_and_serialize_as_themselves() {
        for order in RowOrder::ALL {
            assert_eq!(RowOrder::parse(order.label()), Some(order));
            let json = serde_json::to_string(&order).unwrap();
            assert_eq!(
                json,
                format!("\"{}\"", order.label()),
                "stored diffs say the same"
            );
        }
        assert_eq!(RowOrder::parse("partial"), None);
    }
}
