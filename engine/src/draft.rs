//! A first draft of a dataset's metadata, read from a CSV file for the owner to correct before loading.
//!
//! Everything in [`DatasetMeta`] is published, so the draft never copies a fact of the rows into it as it is:
//! bounds are widened to round numbers (1, 2 or 5 times a power of ten) and start at zero for values that are
//! never negative, the window covers whole months, row limits are rounded up. The draft is only a suggestion
//! shown to the owner (who may change anything) before [`load_csv`](crate::ingest::load_csv) checks the file
//! against what they declared. Input may be hostile: nothing here panics, and it reads at most
//! [`IngestLimits::max_rows`] rows of at most [`IngestLimits::max_columns`] fields.

use crate::ingest::{parse_date, parse_money, IngestLimits, MAX_SUGGESTED_CATEGORIES};
use crate::meta::{Bounds, ColumnMeta, DatasetMeta, PrivacyUnit, TimeWindow};
use crate::value::DataType;
use chrono::{Datelike, Months, NaiveDate};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

/// Data rows shown to the owner in a preview.
pub const PREVIEW_ROWS: usize = 10;

/// A draft of a file's metadata, with its first rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// The suggested metadata (it may not pass [`validate_meta`](crate::ingest::validate_meta), for example
    /// when a header is not a valid column name; checking it names what to fix).
    pub meta: DatasetMeta,
    /// The header, as written.
    pub header: Vec<String>,
    /// The first [`PREVIEW_ROWS`] data rows, as written (owner-only).
    pub preview: Vec<Vec<String>>,
    /// Data rows read.
    pub rows: u64,
    /// Where reading stopped early, if it did (the line and what went wrong); the draft covers the rows before.
    pub stopped: Option<String>,
}

impl Draft {
    /// The drafted metadata as a metadata file (TOML), as `duo owner load --meta` reads it.
    pub fn toml(&self) -> String {
        toml::to_string(&self.meta).unwrap_or_default()
    }
}

/// What one column's cells looked like.
#[derive(Default)]
struct Seen {
    values: u64,
    nulls: u64,
    not_date: bool,
    not_bool: bool,
    not_int: bool,
    not_money: bool,
    cents: bool,
    odd_decimals: bool,
    not_float: bool,
    lo: f64,
    hi: f64,
    cents_lo: i64,
    cents_hi: i64,
    first_date: Option<NaiveDate>,
    last_date: Option<NaiveDate>,
    months: BTreeMap<NaiveDate, u64>,
    categories: BTreeSet<String>,
    many_categories: bool,
}

impl Seen {
    fn add(&mut self, cell: &str) {
        if cell.is_empty() {
            self.nulls += 1;
            return;
        }
        let first = self.values == 0;
        self.values += 1;
        match parse_date(cell) {
            Some(d) => {
                self.first_date = Some(self.first_date.map_or(d, |f| f.min(d)));
                self.last_date = Some(self.last_date.map_or(d, |l| l.max(d)));
                *self.months.entry(month_start(d)).or_default() += 1;
            }
            None => self.not_date = true,
        }
        const BOOLS: [&str; 4] = ["true", "false", "yes", "no"];
        self.not_bool |= !BOOLS.iter().any(|b| b.eq_ignore_ascii_case(cell));
        self.not_int |= cell.parse::<i64>().is_err();
        match parse_money(cell) {
            Some(c) => {
                self.cents_lo = if first { c } else { self.cents_lo.min(c) };
                self.cents_hi = if first { c } else { self.cents_hi.max(c) };
                if let Some((_, f)) = cell.split_once('.') {
                    self.cents = true;
                    self.odd_decimals |= f.len() != 2;
                }
            }
            None => self.not_money = true,
        }
        match cell.parse::<f64>() {
            Ok(x) if x.is_finite() => {
                self.lo = if first { x } else { self.lo.min(x) };
                self.hi = if first { x } else { self.hi.max(x) };
            }
            _ => self.not_float = true,
        }
        if !self.many_categories && !self.categories.contains(cell) {
            if self.categories.len() >= MAX_SUGGESTED_CATEGORIES {
                self.many_categories = true;
                self.categories.clear();
            } else {
                self.categories.insert(cell.to_string());
            }
        }
    }

    fn column(&self, name: &str) -> ColumnMeta {
        let all = self.values > 0;
        let dtype = if !all {
            DataType::Category
        } else if !self.not_date {
            DataType::Date
        } else if !self.not_bool {
            DataType::Bool
        } else if !self.not_int {
            DataType::I64
        } else if !self.not_money && self.cents && !self.odd_decimals {
            DataType::Money
        } else if !self.not_float {
            DataType::F64
        } else {
            DataType::Category
        };
        let bounds = match dtype {
            DataType::I64 | DataType::F64 => Some(round_out(self.lo, self.hi)),
            DataType::Money => Some(round_out(self.cents_lo as f64, self.cents_hi as f64)),
            _ => None,
        };
        let categories = (dtype == DataType::Category && all && !self.many_categories)
            .then(|| self.categories.iter().cloned().collect());
        ColumnMeta {
            name: name.to_string(),
            dtype,
            description: String::new(),
            unit: (dtype == DataType::Money).then(|| "USD cents".to_string()),
            bounds,
            categories,
            nullable: self.nulls > 0 || !all,
        }
    }
}

/// The smallest of 1, 2 and 5 times a power of ten at or above `x` (at least 1; `x` at most about 1e308).
pub fn round_up(x: f64) -> f64 {
    let mut p = 1.0_f64;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if m * p >= x || !(m * p * 10.0).is_finite() {
                return m * p;
            }
        }
        p *= 10.0;
    }
}

/// Bounds covering `lo..=hi`, widened to round numbers: 0 below values that are never negative.
fn round_out(lo: f64, hi: f64) -> Bounds {
    let lo = if lo >= 0.0 { 0.0 } else { -round_up(-lo) };
    let hi = if hi <= 0.0 { 0.0 } else { round_up(hi) };
    Bounds { lo, hi }
}

fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

fn month_end(d: NaiveDate) -> NaiveDate {
    month_start(d)
        .checked_add_months(Months::new(1))
        .and_then(|n| n.pred_opt())
        .unwrap_or(d)
}

/// Read a CSV file (header first) and draft its metadata as dataset `name`: each column's type from its cells
/// (dates written YYYY-MM-DD, true/false or yes/no, whole numbers, dollar amounts with cents, numbers, else
/// categories), round bounds, the categories seen (up to [`MAX_SUGGESTED_CATEGORIES`]), nullable where a cell
/// is empty; the first date column as the time column with whole months as the window; one row as the privacy
/// unit; row limits rounded up from twice what the file holds.
pub fn draft_meta<R: Read>(reader: R, name: &str, limits: &IngestLimits) -> Draft {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(reader);
    let mut header: Vec<String> = Vec::new();
    let mut seen: Vec<Seen> = Vec::new();
    let mut preview = Vec::new();
    let mut rows = 0u64;
    let mut stopped = None;
    let mut record = csv::StringRecord::new();
    loop {
        let line = rdr.position().line();
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                stopped = Some(format!("line {line}: {e}"));
                break;
            }
        }
        if header.is_empty() {
            if record.len() > limits.max_columns {
                stopped = Some(format!(
                    "line 1: the header has {} fields, more than the limit of {}",
                    record.len(),
                    limits.max_columns
                ));
                break;
            }
            header = record
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let h = if i == 0 {
                        h.trim_start_matches('\u{feff}')
                    } else {
                        h
                    };
                    h.trim().to_string()
                })
                .collect();
            seen = header.iter().map(|_| Seen::default()).collect();
            continue;
        }
        if rows >= limits.max_rows {
            stopped = Some(format!("line {line}: more than {} rows", limits.max_rows));
            break;
        }
        rows += 1;
        if preview.len() < PREVIEW_ROWS {
            preview.push(record.iter().map(str::to_string).collect());
        }
        for (s, cell) in seen.iter_mut().zip(record.iter()) {
            if cell.len() <= limits.max_field_bytes {
                s.add(cell.trim());
            }
        }
    }
    let columns: Vec<ColumnMeta> = header.iter().zip(&seen).map(|(h, s)| s.column(h)).collect();
    let time = columns
        .iter()
        .zip(&seen)
        .find(|(c, _)| c.dtype == DataType::Date);
    let window = time.and_then(|(_, s)| {
        Some(TimeWindow {
            start: month_start(s.first_date?),
            end: month_end(s.last_date?),
        })
    });
    let fullest = time
        .and_then(|(_, s)| s.months.values().copied().max())
        .unwrap_or(0);
    let meta = DatasetMeta {
        name: name.to_string(),
        description: String::new(),
        tags: Vec::new(),
        privacy_unit: PrivacyUnit::Event,
        time_column: time.map(|(c, _)| c.name.clone()),
        window,
        max_rows: round_up((rows.saturating_mul(2)).max(10) as f64) as u64,
        max_rows_per_month: time
            .map(|_| round_up(fullest.max(1) as f64).min(f64::from(u32::MAX)) as u32),
        columns,
    };
    Draft {
        meta,
        header,
        preview,
        rows,
        stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(csv: &str) -> Draft {
        draft_meta(csv.as_bytes(), "bank", &IngestLimits::default())
    }

    #[test]
    fn types_bounds_and_window_are_drafted_without_copying_the_data() {
        let d = draft(
            "date,amount,kind,count,ratio,flag\n\
             2025-01-03,12.50,rent,3,0.5,yes\n\
             2025-03-30,-1450.00,food,,1.25,no\n",
        );
        let t: Vec<DataType> = d.meta.columns.iter().map(|c| c.dtype).collect();
        use DataType::*;
        assert_eq!(t, [Date, Money, Category, I64, F64, Bool]);
        let amount = &d.meta.columns[1];
        assert_eq!(
            amount.bounds,
            Some(Bounds {
                lo: -200_000.0,
                hi: 2000.0
            })
        );
        assert_eq!(
            d.meta.columns[2].categories,
            Some(vec!["food".into(), "rent".into()])
        );
        assert!(d.meta.columns[3].nullable && !d.meta.columns[1].nullable);
        assert_eq!(d.meta.columns[3].bounds, Some(Bounds { lo: 0.0, hi: 5.0 }));
        assert_eq!(d.meta.time_column.as_deref(), Some("date"));
        let w = d.meta.window.unwrap();
        assert_eq!(
            (w.start.to_string(), w.end.to_string()),
            ("2025-01-01".into(), "2025-03-31".into())
        );
        assert_eq!(
            (d.rows, d.meta.max_rows, d.meta.max_rows_per_month),
            (2, 10, Some(1))
        );
        assert_eq!(d.preview.len(), 2);
        crate::ingest::validate_meta(&d.meta).unwrap();
        assert_eq!(
            crate::ingest::parse_meta(&d.toml()).unwrap(),
            d.meta,
            "the TOML reads back"
        );
    }

    #[test]
    fn a_broken_file_stops_the_draft_at_its_line_without_panicking() {
        let d = draft_meta(&b"a,b\n1,2\n\xff,4\n"[..], "x", &IngestLimits::default());
        assert_eq!(d.rows, 1);
        assert!(
            d.stopped.as_deref().unwrap().starts_with("line 3:"),
            "{:?}",
            d.stopped
        );
        let empty = draft("");
        assert!(empty.meta.columns.is_empty() && empty.rows == 0);
        assert_eq!(round_up(0.0), 1.0);
        assert_eq!(round_up(101.0), 200.0);
        assert!(round_up(f64::MAX).is_finite());
    }
}
