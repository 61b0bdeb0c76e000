//! What the rewriter did to the outermost ORDER BY, and how a
//! comparison's rows end up ordered: the labels that outcomes, metrics,
//! logs and the store keep.

use serde::Serialize;

/// What happened to the outermost ORDER BY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiebreak {
    /// Keys were appended as the last ORDER BY keys (the order is total
    /// when every relation had one, see [`Plan::ordering`](super::Plan::ordering)).
    Appended,
    /// The ORDER BY already holds every relation's key: total.
    AlreadyTotal,
    /// No ORDER BY: rows are compared as multisets.
    NoOrderBy,
    /// `FETCH … WITH TIES`: appending the id would change which rows come
    /// back, so the order stays partial.
    WithTies,
    /// No key could provably be appended (the reason is a short
    /// snake_case word such as `"no_key"`, `"distinct"`, `"group_by"`,
    /// `"derived_table"`); the comparison is tie-tolerant.
    NotApplicable(&'static str),
}

/// How a comparison's rows are ordered, as `pgshadow_comparison_ordering_total`
/// counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderBasis {
    /// A total order, made total by keys from the catalog only.
    CatalogKey,
    /// A total order that needed a configured key or the default column.
    Config,
    /// An ORDER BY that leaves ties: compared tie-tolerantly.
    Partial,
    /// No (meaningful) ORDER BY: compared as multisets.
    Unordered,
}

impl OrderBasis {
    /// Every basis, for pre-registering metric series.
    pub const ALL: [OrderBasis; 4] = [
        OrderBasis::CatalogKey,
        OrderBasis::Config,
        OrderBasis::Partial,
        OrderBasis::Unordered,
    ];

    /// Stable label for metrics, logs and the store.
    pub fn label(self) -> &'static str {
        match self {
            OrderBasis::CatalogKey => "catalog_key",
            OrderBasis::Config => "config",
            OrderBasis::Partial => "partial",
            OrderBasis::Unordered => "unordered",
        }
    }
}

impl Tiebreak {
    /// What happened, without the reason: what outcomes and the store keep.
    pub fn kind(self) -> TiebreakKind {
        match self {
            Tiebreak::Appended => TiebreakKind::Appended,
            Tiebreak::AlreadyTotal => TiebreakKind::AlreadyTotal,
            Tiebreak::NoOrderBy => TiebreakKind::NoOrderBy,
            Tiebreak::WithTies => TiebreakKind::WithTies,
            Tiebreak::NotApplicable(_) => TiebreakKind::NotApplicable,
        }
    }

    /// Stable label for logs and metrics ([`TiebreakKind::label`]).
    pub fn label(self) -> &'static str {
        self.kind().label()
    }
}

/// A [`Tiebreak`] without its reason: the `tiebreak` of an outcome, of a
/// stored example and of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TiebreakKind {
    /// [`Tiebreak::Appended`].
    Appended,
    /// [`Tiebreak::AlreadyTotal`].
    AlreadyTotal,
    /// [`Tiebreak::NoOrderBy`].
    NoOrderBy,
    /// [`Tiebreak::WithTies`].
    WithTies,
    /// [`Tiebreak::NotApplicable`].
    NotApplicable,
}

impl TiebreakKind {
    /// Every kind, for parsing.
    pub const ALL: [TiebreakKind; 5] = [
        TiebreakKind::Appended,
        TiebreakKind::AlreadyTotal,
        TiebreakKind::NoOrderBy,
        TiebreakKind::WithTies,
        TiebreakKind::NotApplicable,
    ];

    /// The label: `appended`, `already_total`, `no_order_by`, `with_ties`,
    /// `not_applicable`.
    pub fn label(self) -> &'static str {
        match self {
            TiebreakKind::Appended => "appended",
            TiebreakKind::AlreadyTotal => "already_total",
            TiebreakKind::NoOrderBy => "no_order_by",
            TiebreakKind::WithTies => "with_ties",
            TiebreakKind::NotApplicable => "not_applicable",
        }
    }

    /// Parses a label (the store's read side).
    pub fn parse(label: &str) -> Option<TiebreakKind> {
        Self::ALL.into_iter().find(|k| k.label() == label)
    }
}
