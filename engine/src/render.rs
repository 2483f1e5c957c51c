//! Lineages in plain words, for the owner's approval screens and the log.
//!
//! [`describe`] turns a lineage (resolved by the checker or not) into one English phrase:
//!
//! ```text
//! mean(clamp(filter(rent, category == "rent").amount, 0, 300000))
//!   -> mean of `amount` (clamped to 0..300000) in dataset `rent` where `category` is "rent"
//! by_month(sum, filter(transactions, category == "income").amount)
//!   -> monthly sum of `amount` in dataset `transactions` where `category` is "income"
//! by_category(count, transactions.amount, category)
//!   -> number of non-empty values of `amount` in dataset `transactions`, one for each category of
//!      `category` that the metadata lists (a list of values, one per category, also those with no rows)
//! rent.amount
//!   -> every value of `amount` in dataset `rent` (row-level)
//! ```
//!
//! The filters above a dataset are collected into one clause: date windows first ("over the last 12
//! months", "with `due_date` from 2025-11-01 to 2026-10-31"), then the other conditions ("where ... and
//! ..."). Anything that releases rows rather than an aggregate ends in "(row-level)". Numbers are printed
//! as they are stored (money in cents), since the lineage alone does not say which numbers are money.
//! Names are in backticks and string values in double quotes, so nothing in a name can pass for the
//! surrounding words.

use crate::expr::{AggKind, ArithOp, CmpOp, Expr, Pred};
use crate::value::Value;

/// The lineage `expr` in plain English (one phrase, lower case, no final period).
///
/// ```
/// use duo_engine::parse::parse_expr;
/// use duo_engine::render::describe;
///
/// let e = parse_expr("count(last_months(rent, 12))").unwrap();
/// assert_eq!(describe(&e), "number of rows of dataset `rent` over the last 12 months");
/// ```
pub fn describe(expr: &Expr) -> String {
    if let Expr::Batch { items } = expr {
        let n = items.len();
        let listed: Vec<String> = items
            .iter()
            .enumerate()
            .map(|(i, e)| format!("({}) {}", i + 1, describe(e)))
            .collect();
        let what = if n == 1 { "question" } else { "questions" };
        return format!("{n} {what} asked together: {}", listed.join("; "));
    }
    match phrase(expr) {
        Phrase::Table(t) => format!("every row of {} (row-level)", t.text(true)),
        Phrase::Col(c) => format!("every value of {} (row-level)", c.text()),
        Phrase::Val(v) => v.text,
    }
}

/// A table: its source, the columns kept, and the filters on it.
struct Table {
    /// "dataset `rent`", "pointer $3", or the description of whatever else was filtered.
    base: String,
    /// Columns kept by the outermost `select`, if any.
    columns: Option<Vec<String>>,
    /// Date windows from the filters ("over the last 12 months").
    windows: Vec<String>,
    /// Other filter conditions, each with whether it is an `or` (parenthesised next to others).
    conds: Vec<(String, bool)>,
}

impl Table {
    fn new(base: String) -> Self {
        Table {
            base,
            columns: None,
            windows: Vec::new(),
            conds: Vec::new(),
        }
    }

    fn text(&self, with_columns: bool) -> String {
        let mut s = self.base.clone();
        if let (true, Some(cols)) = (with_columns, &self.columns) {
            let names: Vec<String> = cols.iter().map(|c| name(c)).collect();
            let word = if cols.len() == 1 { "column" } else { "columns" };
            if names.is_empty() {
                s.push_str(" (no columns)");
            } else {
                s.push_str(&format!(" ({word} {})", names.join(", ")));
            }
        }
        if !self.windows.is_empty() {
            s.push(' ');
            s.push_str(&self.windows.join(" and "));
        }
        if !self.conds.is_empty() {
            let several = self.conds.len() > 1;
            let conds: Vec<String> = self
                .conds
                .iter()
                .map(|(c, is_or)| {
                    if *is_or && several {
                        format!("({c})")
                    } else {
                        c.clone()
                    }
                })
                .collect();
            s.push_str(" where ");
            s.push_str(&conds.join(" and "));
        }
        s
    }

    fn add_filter(&mut self, pred: &Pred) {
        match pred {
            Pred::And(a, b) => {
                self.add_filter(a);
                self.add_filter(b);
            }
            Pred::LastMonths { months, column } => self.windows.push(match column {
                None => format!("over {}", last_months(*months)),
                Some(c) => format!("with {} in {}", name(c), last_months(*months)),
            }),
            Pred::Between { column, from, to } => self.windows.push(format!(
                "with {} from {} to {}",
                name(column),
                from.format("%Y-%m-%d"),
                to.format("%Y-%m-%d")
            )),
            other => self
                .conds
                .push((pred_text(other, false), matches!(other, Pred::Or(..)))),
        }
    }
}

/// A column-valued phrase: what each value is (`head`), and which table's rows it runs over.
struct Col {
    head: String,
    /// Whether `head` is a binary operation (parenthesised when embedded).
    compound: bool,
    /// The table, when all the columns in `head` come from one.
    scope: Option<String>,
}

impl Col {
    fn head_wrapped(&self) -> String {
        if self.compound {
            format!("({})", self.head)
        } else {
            self.head.clone()
        }
    }

    /// "`amount` in dataset `rent` where ...".
    fn text(&self) -> String {
        match &self.scope {
            Some(scope) => format!("{} in {scope}", self.head_wrapped()),
            None => self.head.clone(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ValKind {
    /// A literal or a pointer: never needs parentheses.
    Atomic,
    /// A phrase such as "mean of ...".
    Phrase,
    /// A binary operation.
    Compound,
}

/// A self-contained phrase for a scalar, a vector or a histogram.
struct Val {
    text: String,
    kind: ValKind,
}

impl Val {
    /// As the operand of an aggregate: parentheses only around a binary operation.
    fn as_input(&self) -> String {
        if self.kind == ValKind::Compound {
            format!("({})", self.text)
        } else {
            self.text.clone()
        }
    }

    /// As the operand of an arithmetic operator: parentheses unless atomic.
    fn as_operand(&self) -> String {
        if self.kind == ValKind::Atomic {
            self.text.clone()
        } else {
            format!("({})", self.text)
        }
    }
}

enum Phrase {
    Table(Table),
    Col(Col),
    Val(Val),
}

fn val(text: String, kind: ValKind) -> Phrase {
    Phrase::Val(Val { text, kind })
}

fn phrase(e: &Expr) -> Phrase {
    match e {
        Expr::Ptr { id } => val(format!("pointer ${id}"), ValKind::Atomic),
        Expr::Dataset { name: n } => Phrase::Table(Table::new(format!("dataset {}", name(n)))),
        Expr::Select { input, columns } => {
            let mut t = table_of(phrase(input));
            t.columns = Some(columns.clone());
            Phrase::Table(t)
        }
        Expr::Filter { input, pred } => {
            let mut t = table_of(phrase(input));
            t.add_filter(pred);
            Phrase::Table(t)
        }
        Expr::Column { input, name: n } => match phrase(input) {
            // A pointer stands for a table here.
            Phrase::Val(v) if matches!(**input, Expr::Ptr { .. }) => Phrase::Col(Col {
                head: name(n),
                compound: false,
                scope: Some(v.text),
            }),
            Phrase::Table(t) => Phrase::Col(Col {
                head: name(n),
                compound: false,
                scope: Some(t.text(false)),
            }),
            Phrase::Col(c) => Phrase::Col(Col {
                head: format!("{} of {}", name(n), c.text()),
                compound: false,
                scope: None,
            }),
            Phrase::Val(v) => Phrase::Col(Col {
                head: format!("{} of {}", name(n), v.as_input()),
                compound: false,
                scope: None,
            }),
        },
        Expr::Clamp { input, lo, hi } => {
            let range = format!("clamped to {}..{}", num(*lo), num(*hi));
            match phrase(input) {
                Phrase::Col(c) => Phrase::Col(Col {
                    head: format!("{} ({range})", c.head_wrapped()),
                    compound: false,
                    scope: c.scope,
                }),
                Phrase::Table(t) => val(
                    format!("every row of {} ({range})", t.text(true)),
                    ValKind::Phrase,
                ),
                Phrase::Val(v) => val(format!("{} ({range})", v.as_operand()), ValKind::Phrase),
            }
        }
        Expr::Arith { op, left, right } => binary(arith_word(*op), phrase(left), phrase(right)),
        Expr::Compare { op, left, right } => {
            let date = is_date_literal(left) || is_date_literal(right);
            binary(cmp_words(*op, date), phrase(left), phrase(right))
        }
        Expr::Literal { value } => val(value_text(value), ValKind::Atomic),
        Expr::Aggregate { kind, input } => val(aggregate(*kind, phrase(input)), ValKind::Phrase),
        Expr::Quantile { input, q } => {
            let what = if *q == 0.5 {
                "median".to_string()
            } else {
                format!("quantile {}", num(*q))
            };
            val(
                format!("{what} of {}", subject(phrase(input))),
                ValKind::Phrase,
            )
        }
        Expr::Histogram { input, edges } => {
            let bins = format!("over bins [{})", nums(edges));
            let text = match phrase(input) {
                Phrase::Col(Col {
                    head,
                    compound,
                    scope: Some(scope),
                }) => {
                    let head = if compound { format!("({head})") } else { head };
                    format!("histogram of {head} {bins} in {scope}")
                }
                other => format!("histogram of {} {bins}", subject(other)),
            };
            val(text, ValKind::Phrase)
        }
        Expr::ByMonth { kind, input } => val(
            format!("monthly {}", aggregate(*kind, phrase(input))),
            ValKind::Phrase,
        ),
        Expr::ByCategory {
            kind,
            input,
            column,
        } => val(
            format!(
                "{}, one for each category of {} that the metadata lists (a list of values, one per \
                 category, also those with no rows)",
                aggregate(*kind, phrase(input)),
                name(column)
            ),
            ValKind::Phrase,
        ),
        Expr::Dot { input, weights } => val(
            format!(
                "weighted sum (weights [{}]) of {}",
                nums(weights),
                subject(phrase(input))
            ),
            ValKind::Phrase,
        ),
        Expr::Catalogue {
            name: n,
            window_end,
        } => val(catalogue(n, window_end.as_ref()), ValKind::Phrase),
        Expr::Batch { .. } => val(describe(e), ValKind::Phrase),
    }
}

/// Whatever was filtered or selected, as a table.
fn table_of(p: Phrase) -> Table {
    match p {
        Phrase::Table(t) => t,
        Phrase::Col(c) => Table::new(format!("({})", c.text())),
        Phrase::Val(v) => Table::new(v.as_input()),
    }
}

/// What an aggregate runs over: "`amount` in dataset `rent` where ...", "rows of dataset `rent`", or a
/// vector's phrase.
fn subject(p: Phrase) -> String {
    match p {
        Phrase::Table(t) => format!("rows of {}", t.text(false)),
        Phrase::Col(c) => c.text(),
        Phrase::Val(v) => v.as_input(),
    }
}

fn aggregate(kind: AggKind, input: Phrase) -> String {
    match (kind, input) {
        (AggKind::Count, Phrase::Table(t)) => format!("number of rows of {}", t.text(false)),
        (AggKind::Count, Phrase::Col(c)) => format!("number of non-empty values of {}", c.text()),
        (AggKind::Count, Phrase::Val(v)) => format!("number of values of {}", v.as_input()),
        (kind, input) => format!("{} of {}", agg_word(kind), subject(input)),
    }
}

/// An arithmetic operation or comparison between two phrases. Columns over the same table share it:
/// "`paid_date` minus `due_date` in dataset `rent`".
fn binary(word: &str, left: Phrase, right: Phrase) -> Phrase {
    let operand_val = |p: Phrase| match p {
        Phrase::Val(v) => v,
        Phrase::Table(t) => Val {
            text: format!("every row of {}", t.text(true)),
            kind: ValKind::Phrase,
        },
        Phrase::Col(c) => Val {
            text: c.text(),
            kind: ValKind::Phrase,
        },
    };
    match (left, right) {
        (Phrase::Col(l), Phrase::Col(r)) if l.scope == r.scope => Phrase::Col(Col {
            head: format!("{} {word} {}", l.head_wrapped(), r.head_wrapped()),
            compound: true,
            scope: l.scope,
        }),
        (Phrase::Col(l), Phrase::Col(r)) => Phrase::Col(Col {
            head: format!("({}) {word} ({})", l.text(), r.text()),
            compound: true,
            scope: None,
        }),
        (Phrase::Col(l), other) => {
            let r = operand_val(other);
            Phrase::Col(Col {
                head: format!("{} {word} {}", l.head_wrapped(), r.as_operand()),
                compound: true,
                scope: l.scope,
            })
        }
        (other, Phrase::Col(r)) => {
            let l = operand_val(other);
            Phrase::Col(Col {
                head: format!("{} {word} {}", l.as_operand(), r.head_wrapped()),
                compound: true,
                scope: r.scope,
            })
        }
        (l, r) => {
            let (l, r) = (operand_val(l), operand_val(r));
            val(
                format!("{} {word} {}", l.as_operand(), r.as_operand()),
                ValKind::Compound,
            )
        }
    }
}

/// A condition inside a filter; `nested` when it is an operand of `and`, `or` or `not`.
fn pred_text(p: &Pred, nested: bool) -> String {
    match p {
        Pred::Compare {
            column,
            op,
            value: Value::Null,
        } if matches!(op, CmpOp::Eq | CmpOp::Ne) => {
            let not = if *op == CmpOp::Ne { "not " } else { "" };
            format!("{} is {not}empty", name(column))
        }
        Pred::Compare { column, op, value } => format!(
            "{} {} {}",
            name(column),
            cmp_words(*op, matches!(value, Value::Date(_))),
            value_text(value)
        ),
        Pred::CompareColumns { left, op, right } => {
            format!("{} {} {}", name(left), cmp_words(*op, false), name(right))
        }
        Pred::Between { column, from, to } => format!(
            "{} is from {} to {}",
            name(column),
            from.format("%Y-%m-%d"),
            to.format("%Y-%m-%d")
        ),
        Pred::LastMonths { months, column } => match column {
            None => format!("the row is in {}", last_months(*months)),
            Some(c) => format!("{} is in {}", name(c), last_months(*months)),
        },
        Pred::And(a, b) => {
            let s = format!("{} and {}", pred_text(a, true), pred_text(b, true));
            if nested {
                format!("({s})")
            } else {
                s
            }
        }
        Pred::Or(a, b) => {
            let s = format!("{} or {}", pred_text(a, true), pred_text(b, true));
            if nested {
                format!("({s})")
            } else {
                s
            }
        }
        Pred::Not(a) => {
            let inner = pred_text(a, true);
            if inner.starts_with('(') {
                format!("not {inner}")
            } else {
                format!("not ({inner})")
            }
        }
    }
}

fn last_months(months: u32) -> String {
    if months == 1 {
        "the last month".into()
    } else {
        format!("the last {months} months")
    }
}

fn catalogue(n: &str, window_end: Option<&chrono::NaiveDate>) -> String {
    let end = match window_end {
        Some(d) => d.format("%Y-%m-%d").to_string(),
        None => "at the last full month".into(),
    };
    let window = match window_length(n) {
        Some((1, unit, _)) => format!("the {unit}"),
        Some((k, _, units)) => format!("the {k} {units}"),
        None => "the window".into(),
    };
    format!("catalogue attribute {} for {window} ending {end}", name(n))
}

/// The window length a catalogue name ends with: `_12m` is 12 months, `_90d` 90 days.
fn window_length(n: &str) -> Option<(u64, &'static str, &'static str)> {
    let (_, suffix) = n.rsplit_once('_')?;
    let (digits, unit, units) = if let Some(d) = suffix.strip_suffix('m') {
        (d, "month", "months")
    } else if let Some(d) = suffix.strip_suffix('d') {
        (d, "day", "days")
    } else {
        return None;
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let k: u64 = digits.parse().ok()?;
    (k > 0).then_some((k, unit, units))
}

fn agg_word(kind: AggKind) -> &'static str {
    match kind {
        AggKind::Count => "count",
        AggKind::Sum => "sum",
        AggKind::Mean => "mean",
        AggKind::Variance => "variance",
        AggKind::Stdev => "standard deviation",
        AggKind::Min => "minimum",
        AggKind::Max => "maximum",
    }
}

fn arith_word(op: ArithOp) -> &'static str {
    match op {
        ArithOp::Add => "plus",
        ArithOp::Sub => "minus",
        ArithOp::Mul => "times",
        ArithOp::Div => "divided by",
    }
}

/// A comparison in words; dates read as before/after.
fn cmp_words(op: CmpOp, date: bool) -> &'static str {
    match (op, date) {
        (CmpOp::Eq, _) => "is",
        (CmpOp::Ne, _) => "is not",
        (CmpOp::Lt, false) => "is less than",
        (CmpOp::Le, false) => "is at most",
        (CmpOp::Gt, false) => "is greater than",
        (CmpOp::Ge, false) => "is at least",
        (CmpOp::Lt, true) => "is before",
        (CmpOp::Le, true) => "is on or before",
        (CmpOp::Gt, true) => "is after",
        (CmpOp::Ge, true) => "is on or after",
    }
}

fn is_date_literal(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Literal {
            value: Value::Date(_)
        }
    )
}

/// A value as it reads in a sentence: strings quoted and escaped, null as "empty".
fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "empty".into(),
        other => other.to_string(),
    }
}

/// A name in backticks; control characters and backticks inside are escaped so that the name cannot
/// break out of its quotes.
fn name(n: &str) -> String {
    let mut s = String::with_capacity(n.len() + 2);
    s.push('`');
    for c in n.chars() {
        match c {
            '`' => s.push_str("\\`"),
            '\\' => s.push_str("\\\\"),
            c if crate::text::is_hidden(c) => s.push_str(&c.escape_default().to_string()),
            c => s.push(c),
        }
    }
    s.push('`');
    s
}

fn num(v: f64) -> String {
    format!("{v}")
}

fn nums(xs: &[f64]) -> String {
    xs.iter().map(|x| num(*x)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_expr;
    use chrono::NaiveDate;

    fn d(src: &str) -> String {
        match parse_expr(src) {
            Ok(e) => describe(&e),
            Err(e) => panic!("{}", e.render(src)),
        }
    }

    #[test]
    fn the_brief_example_built_by_hand() {
        let e = Expr::Aggregate {
            kind: AggKind::Mean,
            input: Box::new(Expr::Clamp {
                input: Box::new(Expr::Column {
                    input: Box::new(Expr::Filter {
                        input: Box::new(Expr::Dataset {
                            name: "rent".into(),
                        }),
                        pred: Pred::Compare {
                            column: "category".into(),
                            op: CmpOp::Eq,
                            value: Value::Str("rent".into()),
                        },
                    }),
                    name: "amount".into(),
                }),
                lo: 0.0,
                hi: 300000.0,
            }),
        };
        assert_eq!(
            describe(&e),
            "mean of `amount` (clamped to 0..300000) in dataset `rent` where `category` is \"rent\""
        );
    }

    #[test]
    fn row_level() {
        assert_eq!(d("rent"), "every row of dataset `rent` (row-level)");
        assert_eq!(
            d("rent.amount"),
            "every value of `amount` in dataset `rent` (row-level)"
        );
        assert_eq!(
            d("select(filter(rent, amount > 100000), due_date, amount)"),
            "every row of dataset `rent` (columns `due_date`, `amount`) where `amount` is greater than \
             100000 (row-level)"
        );
        assert_eq!(
            d("rent.paid_date - rent.due_date"),
            "every value of (`paid_date` minus `due_date`) in dataset `rent` (row-level)"
        );
        assert_eq!(d("$7"), "pointer $7");
        assert_eq!(
            d("$7.amount"),
            "every value of `amount` in pointer $7 (row-level)"
        );
    }

    #[test]
    fn windows() {
        assert_eq!(
            d("sum(filter(transactions, between(date, 2025-11-01, 2026-10-31) and category == \"income\").amount)"),
            "sum of `amount` in dataset `transactions` with `date` from 2025-11-01 to 2026-10-31 where \
             `category` is \"income\""
        );
        assert_eq!(
            d("count(last_months(rent, 12))"),
            "number of rows of dataset `rent` over the last 12 months"
        );
        assert_eq!(
            d("max(filter(last_months(rent, 1), last_months(3, paid_date)).amount)"),
            "maximum of `amount` in dataset `rent` over the last month and with `paid_date` in the last 3 \
             months"
        );
    }

    #[test]
    fn filters_collect_into_one_clause() {
        assert_eq!(
            d("median(filter(filter(last_months(transactions, 6), amount < 0), not category == \"transfer\" \
               and (counterparty == \"x\" or amount <= -5000)).amount)"),
            "median of `amount` in dataset `transactions` over the last 6 months where `amount` is less \
             than 0 and not (`category` is \"transfer\") and (`counterparty` is \"x\" or `amount` is at \
             most -5000)"
        );
        assert_eq!(
            d("count(filter(rent, paid_date == null or paid_date > due_date).due_date)"),
            "number of non-empty values of `due_date` in dataset `rent` where `paid_date` is empty or \
             `paid_date` is greater than `due_date`"
        );
        assert_eq!(
            d("count(filter(rent, paid_date != null and due_date >= 2026-01-01))"),
            "number of rows of dataset `rent` where `paid_date` is not empty and `due_date` is on or after \
             2026-01-01"
        );
        assert_eq!(
            d("count(filter(rent, not (last_months(2) or between(due_date, 2025-01-01, 2025-01-31))))"),
            "number of rows of dataset `rent` where not (the row is in the last 2 months or `due_date` is \
             from 2025-01-01 to 2025-01-31)"
        );
    }

    #[test]
    fn comparisons_and_arithmetic() {
        assert_eq!(
            d("mean(rent.paid_date <= rent.due_date)"),
            "mean of (`paid_date` is at most `due_date`) in dataset `rent`"
        );
        assert_eq!(
            d("mean(clamp(rent.paid_date - rent.due_date, -30, 60))"),
            "mean of (`paid_date` minus `due_date`) (clamped to -30..60) in dataset `rent`"
        );
        assert_eq!(
            d("sum(rent.amount) / 100"),
            "(sum of `amount` in dataset `rent`) divided by 100"
        );
        assert_eq!(
            d("mean(rent.amount) - mean(utilities.amount)"),
            "(mean of `amount` in dataset `rent`) minus (mean of `amount` in dataset `utilities`)"
        );
        assert_eq!(
            d("sum(rent.amount * 2 + rent.amount)"),
            "sum of ((`amount` times 2) plus `amount`) in dataset `rent`"
        );
    }

    #[test]
    fn vectors_histograms_and_quantiles() {
        assert_eq!(
            d("by_month(sum, filter(transactions, category == \"income\").amount)"),
            "monthly sum of `amount` in dataset `transactions` where `category` is \"income\""
        );
        assert_eq!(
            d("by_month(count, rent)"),
            "monthly number of rows of dataset `rent`"
        );
        assert_eq!(
            d("by_category(sum, filter(transactions, amount < 0).amount, category)"),
            "sum of `amount` in dataset `transactions` where `amount` is less than 0, one for each category \
             of `category` that the metadata lists (a list of values, one per category, also those with no \
             rows)"
        );
        assert_eq!(
            d("by_category(count, transactions.amount, `the kind`)"),
            "number of non-empty values of `amount` in dataset `transactions`, one for each category of \
             `the kind` that the metadata lists (a list of values, one per category, also those with no rows)"
        );
        assert_eq!(
            d("histogram(rent.amount, [0, 100, 200])"),
            "histogram of `amount` over bins [0, 100, 200) in dataset `rent`"
        );
        assert_eq!(
            d("dot(by_month(mean, rent.amount), [0.5, 1, 2])"),
            "weighted sum (weights [0.5, 1, 2]) of monthly mean of `amount` in dataset `rent`"
        );
        assert_eq!(
            d("quantile(rent.amount, 0.9)"),
            "quantile 0.9 of `amount` in dataset `rent`"
        );
        assert_eq!(
            d("median(rent.amount)"),
            "median of `amount` in dataset `rent`"
        );
    }

    #[test]
    fn catalogue_windows() {
        let cat = |name: &str, end: Option<NaiveDate>| {
            describe(&Expr::Catalogue {
                name: name.into(),
                window_end: end,
            })
        };
        let end = NaiveDate::from_ymd_opt(2026, 10, 31);
        assert_eq!(
            cat("rent_on_time_ratio_12m", end),
            "catalogue attribute `rent_on_time_ratio_12m` for the 12 months ending 2026-10-31"
        );
        assert_eq!(
            cat("rent_on_time_ratio_12m", None),
            "catalogue attribute `rent_on_time_ratio_12m` for the 12 months ending at the last full month"
        );
        assert_eq!(
            cat("nsf_overdraft_count_90d", end),
            "catalogue attribute `nsf_overdraft_count_90d` for the 90 days ending 2026-10-31"
        );
        assert_eq!(
            cat("balance_1m", end),
            "catalogue attribute `balance_1m` for the month ending 2026-10-31"
        );
        assert_eq!(
            cat("income_trend", None),
            "catalogue attribute `income_trend` for the window ending at the last full month"
        );
        assert_eq!(
            cat("odd_xm", end),
            "catalogue attribute `odd_xm` for the window ending 2026-10-31"
        );
        assert_eq!(
            d("rent_on_time_ratio_12m() * 100"),
            "(catalogue attribute `rent_on_time_ratio_12m` for the 12 months ending at the last full \
             month) times 100"
        );
    }

    #[test]
    fn hostile_names_stay_quoted() {
        let e = Expr::Column {
            input: Box::new(Expr::Dataset {
                name: "x` (aggregate only)\n`".into(),
            }),
            name: "a\\b".into(),
        };
        assert_eq!(
            describe(&e),
            "every value of `a\\\\b` in dataset `x\\` (aggregate only)\\n\\`` (row-level)"
        );
        let e = Expr::Literal {
            value: Value::Str("\" and all rows".into()),
        };
        assert_eq!(describe(&e), "\"\\\" and all rows\"");
    }

    #[test]
    fn a_lone_or_needs_no_parentheses() {
        assert_eq!(
            d("count(filter(rent, amount < 10 or amount > 20))"),
            "number of rows of dataset `rent` where `amount` is less than 10 or `amount` is greater than 20"
        );
        assert_eq!(
            d("count(filter(last_months(rent, 3), amount < 10 or amount > 20))"),
            "number of rows of dataset `rent` over the last 3 months where `amount` is less than 10 or \
             `amount` is greater than 20"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_lineage_reads_as_one_line(e in crate::parse::tests::arb_expr()) {
            let s = describe(&e);
            proptest::prop_assert!(!s.is_empty());
            proptest::prop_assert!(!s.contains('\n') && !s.contains('\r'), "{}", s);
        }
    }

    #[test]
    fn ill_typed_trees_still_read() {
        // The checker rejects these; rendering them must still work (for logs of rejected requests).
        assert_eq!(
            d("count(rent.amount.x)"),
            "number of non-empty values of `x` of `amount` in dataset `rent`"
        );
        assert_eq!(
            d("filter(3, a == 1)"),
            "every row of 3 where `a` is 1 (row-level)"
        );
        assert_eq!(d("mean(rent)"), "mean of rows of dataset `rent`");
    }
}
