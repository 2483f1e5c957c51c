//! CSV ingest into typed datasets.
//!
//! [`parse_meta`] reads the owner's metadata TOML and checks it; [`load_csv`] reads a CSV file into a
//! [`Dataset`] with the declared column types and computes owner-only [`Suggestions`]. Every error says what
//! to fix and where: the TOML line and column, or the CSV line (the header is line 1) and the column name.
//!
//! Input may be hostile, so nothing here panics on any input, and memory stays bounded: a row is never
//! buffered much beyond what [`IngestLimits`] allows, and the number of rows is capped.

use crate::dataset::{Column, ColumnData, Dataset};
use crate::meta::{Bounds, ColumnMeta, ColumnSuggestion, DatasetMeta, PrivacyUnit, Suggestions};
use crate::value::DataType;
use chrono::{Datelike, NaiveDate};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::io::{self, Read};

/// Limits applied while reading a CSV file, whatever the metadata says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Longest field accepted, in bytes as written in the file (default 4096).
    pub max_field_bytes: usize,
    /// Most data rows accepted (default 5,000,000); the metadata's `max_rows` may lower it.
    pub max_rows: u64,
    /// Most columns accepted in the header or the metadata (default 256).
    pub max_columns: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_field_bytes: 4096,
            max_rows: 5_000_000,
            max_columns: 256,
        }
    }
}

/// Longest dataset or column name, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// Most distinct categories listed per column in [`Suggestions`].
pub const MAX_SUGGESTED_CATEGORIES: usize = 64;

/// A metadata file that cannot be used, with what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// The TOML is malformed or does not have the expected keys and types.
    #[error("metadata TOML, line {line}, column {column}: {message}")]
    Toml {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters) of the problem.
        column: usize,
        /// What the TOML parser reported.
        message: String,
    },
    /// As [`MetaError::Toml`], where the parser gave no position.
    #[error("metadata TOML: {message}")]
    TomlUnplaced {
        /// What the TOML parser reported.
        message: String,
    },
    /// The dataset name is not a valid name.
    #[error(
        "dataset name {name:?} is not valid: use a letter followed by up to 63 letters, digits or underscores"
    )]
    DatasetName {
        /// The name given.
        name: String,
    },
    /// A column name is not a valid name.
    #[error(
        "column name {name:?} is not valid: use a letter followed by up to 63 letters, digits or underscores"
    )]
    ColumnName {
        /// The name given.
        name: String,
    },
    /// Two columns have the same name.
    #[error("column \"{name}\" is declared twice; column names must be unique")]
    DuplicateColumn {
        /// The repeated name.
        name: String,
    },
    /// No columns are declared.
    #[error("no columns are declared; add at least one [[columns]] table")]
    NoColumns,
    /// A bound is NaN or infinite.
    #[error("column \"{column}\": bounds must be finite numbers, as in bounds = [0, 100000]")]
    BoundsNotFinite {
        /// The column.
        column: String,
    },
    /// The lower bound is above the upper bound.
    #[error("column \"{column}\": the lower bound {lo} is above the upper bound {hi}; write bounds = [low, high]")]
    BoundsReversed {
        /// The column.
        column: String,
        /// Declared lower bound.
        lo: f64,
        /// Declared upper bound.
        hi: f64,
    },
    /// Bounds on a column that is not i64, f64 or money.
    #[error(
        "column \"{column}\" has type {dtype}; bounds are allowed only on i64, f64 and money columns, so remove them"
    )]
    BoundsOnType {
        /// The column.
        column: String,
        /// Its declared type.
        dtype: DataType,
    },
    /// Categories on a column that is not a category column.
    #[error(
        "column \"{column}\" has type {dtype}; categories are allowed only on category columns, so remove them or set type = \"category\""
    )]
    CategoriesOnType {
        /// The column.
        column: String,
        /// Its declared type.
        dtype: DataType,
    },
    /// An empty category set.
    #[error("column \"{column}\": the category list is empty; list the allowed values, or remove `categories` to allow any value")]
    EmptyCategories {
        /// The column.
        column: String,
    },
    /// A category listed twice.
    #[error("column \"{column}\": category {value:?} is listed twice")]
    DuplicateCategory {
        /// The column.
        column: String,
        /// The repeated value.
        value: String,
    },
    /// A category that no cell could match (cells are trimmed).
    #[error("column \"{column}\": category {value:?} is empty or has spaces at either end, so no cell could match it")]
    BadCategory {
        /// The column.
        column: String,
        /// The declared value.
        value: String,
    },
    /// The time column is not declared.
    #[error("time_column \"{name}\" is not one of the declared columns")]
    UnknownTimeColumn {
        /// The name given.
        name: String,
    },
    /// The time column is not a date column.
    #[error("time_column \"{name}\" has type {dtype}; it must be a date column")]
    TimeColumnNotDate {
        /// The name given.
        name: String,
        /// Its declared type.
        dtype: DataType,
    },
    /// A month privacy unit without a time column to define months.
    #[error("privacy_unit = \"month\" needs a time_column (a date column that places each row in a month)")]
    MonthWithoutTimeColumn,
    /// A month privacy unit without a public bound on one month's rows.
    #[error("privacy_unit = \"month\" needs max_rows_per_month (at least 1): the most rows one month can hold")]
    MonthWithoutRowBound,
    /// The window ends before it starts.
    #[error("the window starts on {start}, after it ends on {end}; swap them")]
    WindowReversed {
        /// Declared start.
        start: NaiveDate,
        /// Declared end.
        end: NaiveDate,
    },
    /// `max_rows` is zero.
    #[error("max_rows must be at least 1 (it is a public upper bound on the number of rows)")]
    ZeroMaxRows,
}

/// What is wrong with one CSV cell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CellProblem {
    /// Empty cell in a column that is not nullable.
    #[error("the cell is empty but the column is not nullable; fill it in, or declare the column nullable = true")]
    Empty,
    /// Not an integer.
    #[error("{value:?} is not a whole number")]
    NotInteger {
        /// The cell (shortened if long).
        value: String,
    },
    /// Not a number.
    #[error("{value:?} is not a number")]
    NotNumber {
        /// The cell (shortened if long).
        value: String,
    },
    /// NaN, an infinity, or a number too large to be finite.
    #[error("{value:?} is not a finite number (NaN, infinities and numbers beyond about 1e308 are not allowed)")]
    NotFinite {
        /// The cell (shortened if long).
        value: String,
    },
    /// Not a boolean.
    #[error("{value:?} is not a boolean; use true/false, yes/no or 1/0")]
    NotBool {
        /// The cell (shortened if long).
        value: String,
    },
    /// Not a date in the form YYYY-MM-DD.
    #[error("{value:?} is not a date written YYYY-MM-DD (for example 2025-03-01)")]
    NotDate {
        /// The cell (shortened if long).
        value: String,
    },
    /// A category outside the declared set.
    #[error("{value:?} is not one of the declared categories ({allowed}); add it to `categories` or fix the cell")]
    NotInCategories {
        /// The cell (shortened if long).
        value: String,
        /// The declared set, listed (shortened if long).
        allowed: String,
    },
    /// Not a money amount.
    #[error("{value:?} {problem}")]
    Money {
        /// The cell (shortened if long).
        value: String,
        /// Why it is not an amount.
        problem: MoneyProblem,
    },
}

/// Why a text is not a money amount (decimal dollars with at most two fraction digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyProblem {
    /// More than two digits after the decimal point.
    #[error("has more than two decimal places (money is dollars and cents)")]
    TooManyDecimals,
    /// A currency sign or thousands separator.
    #[error("has a currency sign or thousands separator; write plain digits such as 1234.56")]
    Symbols,
    /// Anything else that is not `[-]digits[.d[d]]`.
    #[error("is not a dollar amount; write it like 1450.00, -35.5 or 12")]
    Syntax,
    /// Too large to store as 64-bit cents.
    #[error("is too large to store in cents")]
    Overflow,
}

/// A CSV file that cannot be loaded, with the line (the header is line 1) and column to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The metadata itself is invalid.
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    /// The metadata declares more columns than the limit.
    #[error("the metadata declares {declared} columns, more than the limit of {max}")]
    TooManyDeclaredColumns {
        /// Columns declared.
        declared: usize,
        /// The limit.
        max: usize,
    },
    /// The file has no header row.
    #[error("line 1: the file is empty; it needs a header row naming the columns")]
    NoHeader,
    /// The header has more fields than the limit.
    #[error("line 1: the header has {found} fields, more than the limit of {max}")]
    TooManyColumns {
        /// Fields in the header.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// A header field is not UTF-8.
    #[error("line 1, header field {index}: not valid UTF-8 text; save the file as UTF-8")]
    HeaderNotUtf8 {
        /// 1-based position of the field.
        index: usize,
    },
    /// A header name appears twice.
    #[error("line 1: column {name:?} appears twice in the header")]
    DuplicateHeader {
        /// The repeated name (shortened if long).
        name: String,
    },
    /// Declared columns missing from the header.
    #[error("line 1: the header lacks the declared column(s) {}; add them to the file or remove them from the metadata", list(.columns))]
    MissingColumns {
        /// The missing names.
        columns: Vec<String>,
    },
    /// Header columns the metadata does not declare.
    #[error("line 1: the header has column(s) {} that the metadata does not declare; declare them or remove them from the file", list(.columns))]
    ExtraColumns {
        /// The undeclared names (shortened if long).
        columns: Vec<String>,
    },
    /// A row with the wrong number of fields.
    #[error("line {line}: expected {expected} fields (as in the header), found {found}")]
    FieldCount {
        /// Line where the row starts.
        line: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields in this row.
        found: usize,
    },
    /// A field longer than the limit.
    #[error("line {line}, column \"{column}\": the field is {len} bytes, longer than the limit of {max} bytes")]
    FieldTooLong {
        /// Line where the row starts.
        line: u64,
        /// Column name.
        column: String,
        /// Field length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A row so long that reading stopped before it ended.
    #[error("line {line}: the row is far longer than its fields allow (at most {max_field} bytes each); reading stopped")]
    RowTooLong {
        /// Line where the row starts.
        line: u64,
        /// The per-field limit.
        max_field: usize,
    },
    /// Under `privacy_unit = "month"`, a calendar month holds more rows than the declared `max_rows_per_month`
    /// (the sensitivity of every DP release over the dataset; loading it would understate what one month can
    /// change). The fullest month is named.
    #[error(
        "{month} has {rows} rows, more than max_rows_per_month = {max}: one month's rows are what one unit of \
         privacy protects, so DP releases would understate what a month can change; raise max_rows_per_month in \
         the metadata file to at least {rows} (this is the fullest month), or load fewer rows per month"
    )]
    MonthOverBound {
        /// The fullest month, `YYYY-MM`.
        month: String,
        /// Its rows.
        rows: u64,
        /// The declared bound.
        max: u32,
    },
    /// Under `privacy_unit = "month"`, a row has no date in the time column, so it is in no month.
    #[error(
        "line {line}, column \"{column}\": empty, but privacy_unit = \"month\" places every row in a month by \
         this date; fill it in"
    )]
    MonthUndated {
        /// The row's line.
        line: u64,
        /// The time column.
        column: String,
    },
    /// More rows than allowed.
    #[error("line {line}: more than {max} rows; raise max_rows in the metadata or split the file")]
    TooManyRows {
        /// Line of the first row over the limit.
        line: u64,
        /// The limit (the smaller of the metadata's and the node's).
        max: u64,
    },
    /// A field is not UTF-8.
    #[error("line {line}, column \"{column}\": not valid UTF-8 text; save the file as UTF-8")]
    NotUtf8 {
        /// Line where the row starts.
        line: u64,
        /// Column name.
        column: String,
    },
    /// A cell that does not hold a value of the declared type.
    #[error("line {line}, column \"{column}\": {problem}")]
    Cell {
        /// Line where the row starts.
        line: u64,
        /// Column name.
        column: String,
        /// What is wrong.
        problem: CellProblem,
    },
    /// The CSV reader failed (for example an I/O error).
    #[error("line {line}: the CSV could not be read: {message}")]
    Csv {
        /// Line reached.
        line: u64,
        /// What the reader reported.
        message: String,
    },
}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A cell or header text for an error message: at most 64 characters.
fn shown(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", s.get(..cut).unwrap_or_default()),
        None => s.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Metadata

/// Parses a metadata TOML file and checks it with [`validate_meta`].
///
/// Window dates may be TOML strings (`"2024-11-01"`) or TOML dates (`2024-11-01`).
pub fn parse_meta(toml_text: &str) -> Result<DatasetMeta, MetaError> {
    let meta = match toml::from_str::<DatasetMeta>(toml_text) {
        Ok(meta) => meta,
        Err(err) => match with_native_dates_as_text(toml_text) {
            Some(meta) => meta,
            None => return Err(toml_error(toml_text, &err)),
        },
    };
    validate_meta(&meta)?;
    Ok(meta)
}

/// Retries a metadata file whose TOML dates (`2024-11-01`, unquoted) chrono cannot read, as strings.
fn with_native_dates_as_text(text: &str) -> Option<DatasetMeta> {
    fn convert(v: &mut toml::Value) -> bool {
        match v {
            toml::Value::Datetime(d) if d.date.is_some() && d.time.is_none() => {
                *v = toml::Value::String(d.to_string());
                true
            }
            toml::Value::Table(t) => t.iter_mut().fold(false, |acc, (_, x)| convert(x) | acc),
            toml::Value::Array(a) => a.iter_mut().fold(false, |acc, x| convert(x) | acc),
            _ => false,
        }
    }
    let mut value = toml::Value::Table(toml::from_str::<toml::Table>(text).ok()?);
    if !convert(&mut value) {
        return None;
    }
    value.try_into().ok()
}

fn toml_error(text: &str, err: &toml::de::Error) -> MetaError {
    let message = err.message().trim().to_string();
    match err.span() {
        Some(span) => {
            let (line, column) = line_col(text, span.start);
            MetaError::Toml {
                line,
                column,
                message,
            }
        }
        None => MetaError::TomlUnplaced { message },
    }
}

/// 1-based line and character column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let (mut line, mut col) = (1, 1);
    for (i, ch) in text.char_indices() {
        if i >= offset {
            break;
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() <= MAX_NAME_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks declared metadata: names, bounds, category sets, the time column, the window and `max_rows`.
pub fn validate_meta(meta: &DatasetMeta) -> Result<(), MetaError> {
    if !valid_name(&meta.name) {
        return Err(MetaError::DatasetName {
            name: shown(&meta.name),
        });
    }
    if meta.columns.is_empty() {
        return Err(MetaError::NoColumns);
    }
    let mut seen = HashSet::new();
    for col in &meta.columns {
        validate_column(col)?;
        if !seen.insert(col.name.as_str()) {
            return Err(MetaError::DuplicateColumn {
                name: col.name.clone(),
            });
        }
    }
    match &meta.time_column {
        Some(name) => match meta.column(name) {
            None => {
                return Err(MetaError::UnknownTimeColumn { name: shown(name) });
            }
            Some(c) if c.dtype != DataType::Date => {
                return Err(MetaError::TimeColumnNotDate {
                    name: name.clone(),
                    dtype: c.dtype,
                });
            }
            Some(_) => {}
        },
        None if meta.privacy_unit == PrivacyUnit::Month => {
            return Err(MetaError::MonthWithoutTimeColumn);
        }
        None => {}
    }
    if meta.privacy_unit == PrivacyUnit::Month && meta.max_rows_per_month.unwrap_or(0) == 0 {
        return Err(MetaError::MonthWithoutRowBound);
    }
    if let Some(w) = meta.window {
        if w.start > w.end {
            return Err(MetaError::WindowReversed {
                start: w.start,
                end: w.end,
            });
        }
    }
    if meta.max_rows == 0 {
        return Err(MetaError::ZeroMaxRows);
    }
    Ok(())
}

fn validate_column(col: &ColumnMeta) -> Result<(), MetaError> {
    if !valid_name(&col.name) {
        return Err(MetaError::ColumnName {
            name: shown(&col.name),
        });
    }
    if let Some(Bounds { lo, hi }) = col.bounds {
        if !matches!(col.dtype, DataType::I64 | DataType::F64 | DataType::Money) {
            return Err(MetaError::BoundsOnType {
                column: col.name.clone(),
                dtype: col.dtype,
            });
        }
        if !lo.is_finite() || !hi.is_finite() {
            return Err(MetaError::BoundsNotFinite {
                column: col.name.clone(),
            });
        }
        if lo > hi {
            return Err(MetaError::BoundsReversed {
                column: col.name.clone(),
                lo,
                hi,
            });
        }
    }
    if let Some(cats) = &col.categories {
        if col.dtype != DataType::Category {
            return Err(MetaError::CategoriesOnType {
                column: col.name.clone(),
                dtype: col.dtype,
            });
        }
        if cats.is_empty() {
            return Err(MetaError::EmptyCategories {
                column: col.name.clone(),
            });
        }
        let mut seen = HashSet::new();
        for c in cats {
            if c.is_empty() || c.trim() != c {
                return Err(MetaError::BadCategory {
                    column: col.name.clone(),
                    value: shown(c),
                });
            }
            if !seen.insert(c.as_str()) {
                return Err(MetaError::DuplicateCategory {
                    column: col.name.clone(),
                    value: shown(c),
                });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Money

/// Formats cents as decimal dollars with two fraction digits: `-3500` is `"-35.00"`.
pub fn money_to_string(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Cents as a person reads money: a dollar sign, thousands grouped, two decimals (`-123456` is `"-$1,234.56"`).
/// Every screen and the command line show money this way.
pub fn dollars(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let whole = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}${grouped}.{:02}", abs % 100)
}

/// Parses decimal dollars (`1450.00`, `-35.5`, `12`, `.5`) exactly into cents; `None` if it is not an amount.
pub fn parse_money(s: &str) -> Option<i64> {
    money_cents(s).ok()
}

/// Parses decimal dollars exactly into cents, without going through floating point.
fn money_cents(s: &str) -> Result<i64, MoneyProblem> {
    let bytes = s.as_bytes();
    if bytes.iter().any(|b| matches!(b, b'$' | b',' | b'_')) {
        return Err(MoneyProblem::Symbols);
    }
    let (negative, rest) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    let (int_part, frac_part) = match rest.iter().position(|&b| b == b'.') {
        Some(dot) => {
            let (int_part, with_dot) = rest.split_at(dot);
            (int_part, Some(with_dot.get(1..).unwrap_or_default()))
        }
        None => (rest, None),
    };
    let digits = |p: &[u8]| p.iter().all(u8::is_ascii_digit);
    if !digits(int_part) {
        return Err(MoneyProblem::Syntax);
    }
    let frac: i64 = match frac_part {
        None if int_part.is_empty() => return Err(MoneyProblem::Syntax),
        None => 0,
        Some(f) if f.is_empty() || !digits(f) => return Err(MoneyProblem::Syntax),
        Some(f) if f.len() > 2 => return Err(MoneyProblem::TooManyDecimals),
        Some(f) => f
            .iter()
            .chain(std::iter::repeat(&b'0'))
            .take(2)
            .fold(0, |acc, &d| acc * 10 + i64::from(d - b'0')),
    };
    // Accumulate as a negative number so that i64::MIN cents is representable.
    let mut cents: i64 = 0;
    for &d in int_part {
        cents = cents
            .checked_mul(10)
            .and_then(|c| c.checked_sub(i64::from(d - b'0')))
            .ok_or(MoneyProblem::Overflow)?;
    }
    cents = cents
        .checked_mul(100)
        .and_then(|c| c.checked_sub(frac))
        .ok_or(MoneyProblem::Overflow)?;
    if negative {
        Ok(cents)
    } else {
        cents.checked_neg().ok_or(MoneyProblem::Overflow)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Cells

/// Parses a date written strictly as `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let [y0, y1, y2, y3, dash1, m0, m1, dash2, d0, d1] = <[u8; 10]>::try_from(s.as_bytes()).ok()?;
    if dash1 != b'-' || dash2 != b'-' {
        return None;
    }
    let num = |ds: &[u8]| -> Option<u32> {
        ds.iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let year = i32::try_from(num(&[y0, y1, y2, y3])?).ok()?;
    NaiveDate::from_ymd_opt(year, num(&[m0, m1])?, num(&[d0, d1])?)
}

fn parse_bool(s: &str) -> Option<bool> {
    const TRUE: [&str; 3] = ["true", "yes", "1"];
    const FALSE: [&str; 3] = ["false", "no", "0"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(s)) {
        Some(false)
    } else {
        None
    }
}

/// A typed column being filled.
enum Builder<'m> {
    Int(Vec<Option<i64>>),
    Money(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Date(Vec<Option<NaiveDate>>),
    Cat {
        values: Vec<Option<String>>,
        /// The declared set, by value, with whether each was seen.
        declared: Option<(HashMap<&'m str, usize>, Vec<bool>)>,
        /// Distinct values seen, for columns without a declared set (at most the suggestion limit).
        free: BTreeSet<String>,
    },
}

/// One declared column: where it is in the CSV and what it holds so far.
struct Plan<'m> {
    meta: &'m ColumnMeta,
    field: usize,
    builder: Builder<'m>,
}

impl<'m> Plan<'m> {
    fn new(meta: &'m ColumnMeta, field: usize) -> Self {
        let builder = match meta.dtype {
            DataType::I64 => Builder::Int(Vec::new()),
            DataType::Money => Builder::Money(Vec::new()),
            DataType::F64 => Builder::Float(Vec::new()),
            DataType::Bool => Builder::Bool(Vec::new()),
            DataType::Date => Builder::Date(Vec::new()),
            DataType::Category => Builder::Cat {
                values: Vec::new(),
                declared: meta.categories.as_ref().map(|c| {
                    let index = c.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
                    (index, vec![false; c.len()])
                }),
                free: BTreeSet::new(),
            },
        };
        Plan {
            meta,
            field,
            builder,
        }
    }

    /// Parses one cell and appends it.
    /// The date just pushed to a date column (`None` for an empty cell or another type).
    fn last_date(&self) -> Option<NaiveDate> {
        match &self.builder {
            Builder::Date(v) => v.last().copied().flatten(),
            _ => None,
        }
    }

    fn push(&mut self, raw: &str) -> Result<(), CellProblem> {
        let s = raw.trim();
        if s.is_empty() {
            if !self.meta.nullable {
                return Err(CellProblem::Empty);
            }
            match &mut self.builder {
                Builder::Int(v) | Builder::Money(v) => v.push(None),
                Builder::Float(v) => v.push(None),
                Builder::Bool(v) => v.push(None),
                Builder::Date(v) => v.push(None),
                Builder::Cat { values, .. } => values.push(None),
            }
            return Ok(());
        }
        match &mut self.builder {
            Builder::Int(v) => {
                let x = s
                    .parse::<i64>()
                    .map_err(|_| CellProblem::NotInteger { value: shown(s) })?;
                v.push(Some(x));
            }
            Builder::Money(v) => {
                let x = money_cents(s).map_err(|problem| CellProblem::Money {
                    value: shown(s),
                    problem,
                })?;
                v.push(Some(x));
            }
            Builder::Float(v) => {
                let x = s
                    .parse::<f64>()
                    .map_err(|_| CellProblem::NotNumber { value: shown(s) })?;
                if !x.is_finite() {
                    return Err(CellProblem::NotFinite { value: shown(s) });
                }
                v.push(Some(x));
            }
            Builder::Bool(v) => {
                let x = parse_bool(s).ok_or_else(|| CellProblem::NotBool { value: shown(s) })?;
                v.push(Some(x));
            }
            Builder::Date(v) => {
                let x = parse_date(s).ok_or_else(|| CellProblem::NotDate { value: shown(s) })?;
                v.push(Some(x));
            }
            Builder::Cat {
                values,
                declared,
                free,
            } => {
                match declared {
                    Some((index, seen)) => {
                        let Some(&i) = index.get(s) else {
                            return Err(CellProblem::NotInCategories {
                                value: shown(s),
                                allowed: shown(&list(
                                    self.meta.categories.as_deref().unwrap_or_default(),
                                )),
                            });
                        };
                        if let Some(flag) = seen.get_mut(i) {
                            *flag = true;
                        }
                    }
                    None => {
                        if free.len() < MAX_SUGGESTED_CATEGORIES && !free.contains(s) {
                            free.insert(s.to_string());
                        }
                    }
                }
                values.push(Some(s.to_string()));
            }
        }
        Ok(())
    }

    /// The finished column and what was observed in it.
    fn finish(self) -> (Column, ColumnSuggestion) {
        let name = self.meta.name.clone();
        let bounds = self.meta.bounds;
        let outside = |x: f64| bounds.is_some_and(|b| x < b.lo || x > b.hi);
        let mut sug = ColumnSuggestion {
            name: name.clone(),
            ..ColumnSuggestion::default()
        };
        let data = match self.builder {
            Builder::Int(v) | Builder::Money(v) => {
                let is_money = self.meta.dtype == DataType::Money;
                let text = |x: i64| {
                    if is_money {
                        money_to_string(x)
                    } else {
                        x.to_string()
                    }
                };
                let present = v.iter().flatten().copied();
                sug.nulls = count(v.iter().filter(|x| x.is_none()));
                sug.outside_bounds = count(present.clone().filter(|&x| outside(x as f64)));
                sug.min = present.clone().min().map(text);
                sug.max = present.max().map(text);
                ColumnData::Int(v)
            }
            Builder::Float(v) => {
                let present = v.iter().flatten().copied();
                sug.nulls = count(v.iter().filter(|x| x.is_none()));
                sug.outside_bounds = count(present.clone().filter(|&x| outside(x)));
                sug.min = present.clone().reduce(f64::min).map(|x| x.to_string());
                sug.max = present.reduce(f64::max).map(|x| x.to_string());
                ColumnData::Float(v)
            }
            Builder::Bool(v) => {
                let present = v.iter().flatten().copied();
                sug.nulls = count(v.iter().filter(|x| x.is_none()));
                sug.min = present.clone().min().map(|x| x.to_string());
                sug.max = present.max().map(|x| x.to_string());
                ColumnData::Bool(v)
            }
            Builder::Date(v) => {
                let present = v.iter().flatten().copied();
                sug.nulls = count(v.iter().filter(|x| x.is_none()));
                let text = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
                sug.min = present.clone().min().map(text);
                sug.max = present.max().map(text);
                ColumnData::Date(v)
            }
            Builder::Cat {
                values,
                declared,
                free,
            } => {
                sug.nulls = count(values.iter().filter(|x| x.is_none()));
                let mut distinct: Vec<String> = match declared {
                    Some((_, seen)) => self
                        .meta
                        .categories
                        .iter()
                        .flatten()
                        .zip(seen)
                        .filter(|(_, seen)| *seen)
                        .map(|(c, _)| c.clone())
                        .collect(),
                    None => free.into_iter().collect(),
                };
                distinct.sort_unstable();
                distinct.truncate(MAX_SUGGESTED_CATEGORIES);
                sug.categories = Some(distinct);
                ColumnData::Cat(values)
            }
        };
        (Column { name, data }, sug)
    }
}

fn count<I: Iterator>(it: I) -> u64 {
    it.fold(0, |n, _| n + 1)
}

// ---------------------------------------------------------------------------------------------------------
// Reading

/// The reader under the CSV parser. It refuses to read more than an allowance, so that one hostile row cannot
/// make the parser buffer without bound (the allowance moves forward after each row), and it records where
/// lines end so that errors can name the line a row starts on (the CSV parser's own count is off by one for
/// CRLF files and after blank lines).
struct Guarded<R> {
    inner: R,
    /// Bytes read so far: the offset of the next byte.
    read: u64,
    /// Offset up to which reading is allowed.
    allowed: u64,
    /// Whether reading stopped at the allowance.
    tripped: bool,
    /// A `\r` at the end of the last chunk, not yet known to be followed by `\n`.
    pending_cr: Option<u64>,
    /// Line terminators (`\n`, `\r\n` or a lone `\r`) read but not yet passed, as `[start, end)` offsets.
    terminators: VecDeque<(u64, u64)>,
    /// Line terminators passed.
    passed: u64,
}

impl<R> Guarded<R> {
    fn new(inner: R, allowed: u64) -> Self {
        Guarded {
            inner,
            read: 0,
            allowed,
            tripped: false,
            pending_cr: None,
            terminators: VecDeque::new(),
            passed: 0,
        }
    }

    fn scan(&mut self, chunk: &[u8]) {
        let base = self.read;
        let mut skip_lf = false;
        if let Some(cr) = self.pending_cr.take() {
            if chunk.first() == Some(&b'\n') {
                self.terminators.push_back((cr, base + 1));
                skip_lf = true;
            } else {
                self.terminators.push_back((cr, cr + 1));
            }
        }
        let mut bytes = chunk.iter().enumerate().skip(usize::from(skip_lf));
        while let Some((i, &b)) = bytes.next() {
            // One comparison for ordinary bytes: both terminators are below 14.
            if b > b'\r' {
                continue;
            }
            let at = base + i as u64;
            if b == b'\n' {
                self.terminators.push_back((at, at + 1));
            } else if b == b'\r' {
                match chunk.get(i + 1) {
                    Some(b'\n') => {
                        self.terminators.push_back((at, at + 2));
                        bytes.next();
                    }
                    Some(_) => self.terminators.push_back((at, at + 1)),
                    None => self.pending_cr = Some(at),
                }
            }
        }
    }

    /// The 1-based line of the row whose bytes begin at `offset`, after any blank lines there. Offsets must
    /// be asked for in increasing order.
    fn line_at(&mut self, offset: u64) -> u64 {
        let mut at = offset;
        while let Some(&(start, end)) = self.terminators.front() {
            if end <= at {
                // A terminator before the row.
            } else if start <= at {
                // A blank line, or the rest of the previous row's terminator: the row starts after it.
                at = end;
            } else {
                break;
            }
            self.terminators.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.allowed.saturating_sub(self.read);
        if room == 0 && !buf.is_empty() {
            self.tripped = true;
            return Err(io::Error::other("row too long"));
        }
        let take = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let (head, _) = buf.split_at_mut(take);
        let n = self.inner.read(head)?;
        if n == 0 {
            if let Some(cr) = self.pending_cr.take() {
                self.terminators.push_back((cr, cr + 1));
            }
        }
        self.scan(head.get(..n).unwrap_or_default());
        self.read = self.read.saturating_add(n as u64);
        Ok(n)
    }
}

/// The CSV reader's buffer size.
const BUFFER: usize = 64 * 1024;

/// Loads a CSV file (header row first) into a dataset typed by `meta`, with owner-only suggestions.
///
/// The header must name every declared column, in any order, and no others; the dataset's columns are in the
/// metadata's order. The version is 0 (the store assigns versions). Errors name the line (the header is line
/// 1) and the column.
pub fn load_csv<R: Read>(
    reader: R,
    meta: &DatasetMeta,
    limits: &IngestLimits,
) -> Result<(Dataset, Suggestions), IngestError> {
    validate_meta(meta)?;
    if meta.columns.len() > limits.max_columns {
        return Err(IngestError::TooManyDeclaredColumns {
            declared: meta.columns.len(),
            max: limits.max_columns,
        });
    }
    let max_rows = limits.max_rows.min(meta.max_rows);
    let max_field = limits.max_field_bytes;
    // Raw bytes a row of `n` fields may take: each field quoted with every quote doubled, plus separators.
    let row_budget = |n: usize| -> u64 {
        let per_field = max_field.saturating_mul(2).saturating_add(3) as u64;
        per_field
            .saturating_mul(n as u64)
            .saturating_add(2)
            .saturating_add(BUFFER as u64)
    };
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .buffer_capacity(BUFFER)
        .from_reader(Guarded::new(reader, row_budget(limits.max_columns)));

    let csv_error = |rdr: &mut csv::Reader<Guarded<R>>, err: csv::Error| {
        let start = rdr.position().byte();
        let guard = rdr.get_mut();
        let line = guard.line_at(start);
        if guard.tripped {
            IngestError::RowTooLong { line, max_field }
        } else {
            IngestError::Csv {
                line,
                message: err.to_string(),
            }
        }
    };

    // Header.
    let header = match rdr.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(csv_error(&mut rdr, e)),
    };
    if header.is_empty() || (header.len() == 1 && header.as_slice().trim_ascii().is_empty()) {
        return Err(IngestError::NoHeader);
    }
    if header.len() > limits.max_columns {
        return Err(IngestError::TooManyColumns {
            found: header.len(),
            max: limits.max_columns,
        });
    }
    let mut names = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let text =
            std::str::from_utf8(raw).map_err(|_| IngestError::HeaderNotUtf8 { index: i + 1 })?;
        let text = if i == 0 {
            text.trim_start_matches('\u{feff}')
        } else {
            text
        };
        let text = text.trim();
        if names.contains(&text) {
            return Err(IngestError::DuplicateHeader { name: shown(text) });
        }
        names.push(text);
    }
    let missing: Vec<String> = meta
        .columns
        .iter()
        .filter(|c| !names.contains(&c.name.as_str()))
        .map(|c| c.name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(IngestError::MissingColumns { columns: missing });
    }
    let extra: Vec<String> = names
        .iter()
        .filter(|n| meta.column(n).is_none())
        .map(|n| shown(n))
        .collect();
    if !extra.is_empty() {
        return Err(IngestError::ExtraColumns { columns: extra });
    }
    let mut plans: Vec<Plan<'_>> = meta
        .columns
        .iter()
        .map(|c| {
            let field = names.iter().position(|n| *n == c.name).unwrap_or(0);
            Plan::new(c, field)
        })
        .collect();
    let expected = header.len();
    let next = rdr.position().byte();
    rdr.get_mut().allowed = next.saturating_add(row_budget(expected));

    // Rows; under a month unit, the rows of each calendar month (the time column's plan is checked below).
    let mut record = csv::ByteRecord::new();
    let mut rows: u64 = 0;
    let month_unit = meta.privacy_unit == PrivacyUnit::Month;
    let time_plan = meta
        .time_column
        .as_ref()
        .and_then(|t| plans.iter().position(|p| &p.meta.name == t))
        .filter(|_| month_unit);
    let mut per_month: BTreeMap<(i32, u32), u64> = BTreeMap::new();
    loop {
        match rdr.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(&mut rdr, e)),
        }
        let start = record.position().map_or(0, |p| p.byte());
        let next = rdr.position().byte();
        let guard = rdr.get_mut();
        let line = guard.line_at(start);
        guard.allowed = next.saturating_add(row_budget(expected));
        if rows >= max_rows {
            return Err(IngestError::TooManyRows {
                line,
                max: max_rows,
            });
        }
        if record.len() != expected {
            return Err(IngestError::FieldCount {
                line,
                expected,
                found: record.len(),
            });
        }
        for plan in &mut plans {
            let raw = record.get(plan.field).unwrap_or_default();
            if raw.len() > max_field {
                return Err(IngestError::FieldTooLong {
                    line,
                    column: plan.meta.name.clone(),
                    len: raw.len(),
                    max: max_field,
                });
            }
            let text = std::str::from_utf8(raw).map_err(|_| IngestError::NotUtf8 {
                line,
                column: plan.meta.name.clone(),
            })?;
            plan.push(text).map_err(|problem| IngestError::Cell {
                line,
                column: plan.meta.name.clone(),
                problem,
            })?;
        }
        if let Some(t) = time_plan {
            match plans[t].last_date() {
                Some(d) => *per_month.entry((d.year(), d.month())).or_default() += 1,
                None => {
                    return Err(IngestError::MonthUndated {
                        line,
                        column: plans[t].meta.name.clone(),
                    })
                }
            }
        }
        rows += 1;
    }
    if let Some(max) = meta.max_rows_per_month.filter(|_| month_unit) {
        // The fullest month (the earliest of equals).
        let fullest =
            per_month.iter().fold(
                None,
                |best: Option<(&(i32, u32), u64)>, (m, n)| match best {
                    Some((_, b)) if b >= *n => best,
                    _ => Some((m, *n)),
                },
            );
        if let Some(((y, m), n)) = fullest.filter(|(_, n)| *n > u64::from(max)) {
            return Err(IngestError::MonthOverBound {
                month: format!("{y:04}-{m:02}"),
                rows: n,
                max,
            });
        }
    }

    let (columns, sug_columns) = plans.into_iter().map(Plan::finish).unzip();
    let dataset = Dataset {
        meta: meta.clone(),
        version: 0,
        columns,
    };
    let suggestions = Suggestions {
        rows,
        columns: sug_columns,
    };
    Ok((dataset, suggestions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::TimeWindow;
    use crate::value::Value;
    use proptest::prelude::*;

    const META: &str = r#"
name = "payments"
description = "test payments"
tags = ["payments"]
privacy_unit = "event"
time_column = "due_date"
window = { start = "2025-01-01", end = "2025-12-31" }
max_rows = 100

[[columns]]
name = "due_date"
type = "date"

[[columns]]
name = "paid_date"
type = "date"
nullable = true

[[columns]]
name = "amount"
type = "money"
unit = "USD cents"
bounds = [0, 200000]

[[columns]]
name = "kind"
type = "category"
categories = ["rent", "phone"]

[[columns]]
name = "late_days"
type = "i64"
nullable = true

[[columns]]
name = "score"
type = "f64"

[[columns]]
name = "autopay"
type = "bool"
"#;

    const HEADER: &str = "due_date,paid_date,amount,kind,late_days,score,autopay\n";

    fn meta() -> DatasetMeta {
        match parse_meta(META) {
            Ok(m) => m,
            Err(e) => panic!("test metadata rejected: {e}"),
        }
    }

    /// A month-unit dataset declaring `max_rows_per_month = k`.
    fn month_meta(k: u32) -> DatasetMeta {
        parse_meta(&format!(
            "name = \"activity\"\nprivacy_unit = \"month\"\ntime_column = \"day\"\nmax_rows = 1000\n\
             max_rows_per_month = {k}\n[[columns]]\nname = \"day\"\ntype = \"date\"\nnullable = true\n\
             [[columns]]\nname = \"amount\"\ntype = \"money\"\nbounds = [0, 100000]\n"
        ))
        .unwrap()
    }

    /// Under a month unit the declared `max_rows_per_month` is the sensitivity of every DP release, so a month
    /// holding more rows is refused at load, naming the fullest month, its rows and what to do (before, 36 to 38
    /// rows a month loaded under a bound of 1). A month at the bound loads; an undated row is in no month.
    #[test]
    fn a_month_unit_refuses_months_over_the_declared_bound() {
        let mut csv = String::from("day,amount\n2025-01-31,5\n2025-02-01,1\n");
        for d in 1..=3 {
            csv.push_str(&format!("2025-03-{d:02},100\n"));
        }
        let limits = IngestLimits::default();
        match load_csv(csv.as_bytes(), &month_meta(2), &limits) {
            Err(e @ IngestError::MonthOverBound { .. }) => {
                assert_eq!(
                    e,
                    IngestError::MonthOverBound {
                        month: "2025-03".into(),
                        rows: 3,
                        max: 2
                    }
                );
                let text = e.to_string();
                assert!(
                    text.contains("2025-03 has 3 rows")
                        && text.contains(
                            "raise max_rows_per_month in the metadata file to at least 3"
                        ),
                    "{text}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let (ds, _) = load_csv(csv.as_bytes(), &month_meta(3), &limits).unwrap();
        assert_eq!(ds.columns[0].data.len(), 5);
        let undated = "day,amount\n2025-01-31,5\n,7\n";
        assert!(matches!(
            load_csv(undated.as_bytes(), &month_meta(3), &limits),
            Err(IngestError::MonthUndated { line: 3, .. })
        ));
    }

    fn load(csv: &str) -> Result<(Dataset, Suggestions), IngestError> {
        load_csv(csv.as_bytes(), &meta(), &IngestLimits::default())
    }

    fn load_err(csv: &str) -> String {
        match load(csv) {
            Ok(_) => panic!("expected an error for {csv:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn row(cells: &str) -> String {
        format!("{HEADER}{cells}\n")
    }

    #[test]
    fn good_file_round_trips() {
        let csv = format!(
            "{HEADER}2025-01-01,2024-12-30,1450.00,rent,,0.5,true\n\
             2025-02-01,,1450,rent,3,1e2,NO\n\
             2025-02-10,2025-02-12,-35.5, phone ,2,-2.25,1\n\
             \"2025-03-01\",2025-03-01,2500.07,rent,0,0,Yes\n"
        );
        let (ds, sug) = load(&csv).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ds.version, 0);
        assert_eq!(ds.rows(), 4);
        assert_eq!(ds.meta, meta());
        let names: Vec<_> = ds.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "due_date",
                "paid_date",
                "amount",
                "kind",
                "late_days",
                "score",
                "autopay"
            ]
        );
        let amount = ds.column("amount").map(|c| c.data.clone());
        assert_eq!(
            amount,
            Some(ColumnData::Int(vec![
                Some(145000),
                Some(145000),
                Some(-3550),
                Some(250007)
            ]))
        );
        let paid = ds.column("paid_date").map(|c| c.data.value(1));
        assert_eq!(paid, Some(Value::Null));
        let kind = ds.column("kind").map(|c| c.data.value(2));
        assert_eq!(kind, Some(Value::Str("phone".into())));
        let score = ds.column("score").map(|c| c.data.clone());
        assert_eq!(
            score,
            Some(ColumnData::Float(vec![
                Some(0.5),
                Some(100.0),
                Some(-2.25),
                Some(0.0)
            ]))
        );
        let autopay = ds.column("autopay").map(|c| c.data.clone());
        assert_eq!(
            autopay,
            Some(ColumnData::Bool(vec![
                Some(true),
                Some(false),
                Some(true),
                Some(true)
            ]))
        );
        let date = ds.column("due_date").map(|c| c.data.value(3));
        assert_eq!(date, NaiveDate::from_ymd_opt(2025, 3, 1).map(Value::Date));

        assert_eq!(sug.rows, 4);
        let s = |name: &str| {
            sug.columns
                .iter()
                .find(|c| c.name == name)
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(s("amount").min.as_deref(), Some("-35.50"));
        assert_eq!(s("amount").max.as_deref(), Some("2500.07"));
        assert_eq!(s("amount").outside_bounds, 2, "-35.50 and 2500.07");
        assert_eq!(s("paid_date").nulls, 1);
        assert_eq!(s("paid_date").min.as_deref(), Some("2024-12-30"));
        assert_eq!(s("late_days").nulls, 1);
        assert_eq!(s("late_days").max.as_deref(), Some("3"));
        assert_eq!(
            s("kind").categories,
            Some(vec!["phone".to_string(), "rent".to_string()])
        );
        assert_eq!(s("score").min.as_deref(), Some("-2.25"));
        assert_eq!(s("autopay").min.as_deref(), Some("false"));
    }

    #[test]
    fn suggestions_list_free_categories_up_to_the_limit() {
        let text = META
            .replacen("categories = [\"rent\", \"phone\"]\n", "", 1)
            .replacen("max_rows = 100", "max_rows = 1000", 1);
        let m = parse_meta(&text).unwrap_or_else(|e| panic!("{e}"));
        let body: String = (0..100)
            .map(|i| format!("2025-01-01,,1,k{:03},,0,true\n", 99 - i))
            .collect();
        let csv = format!("{HEADER}{body}2025-01-01,,1,k099,,0,true\n");
        let (ds, sug) = load_csv(csv.as_bytes(), &m, &IngestLimits::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ds.rows(), 101);
        let kind = sug
            .columns
            .iter()
            .find(|c| c.name == "kind")
            .cloned()
            .unwrap_or_default();
        let cats = kind.categories.unwrap_or_default();
        assert_eq!(cats.len(), MAX_SUGGESTED_CATEGORIES);
        assert_eq!(cats.first().map(String::as_str), Some("k036"));
        assert_eq!(cats.last().map(String::as_str), Some("k099"));
        assert!(cats.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn header_order_may_differ_and_bom_is_ignored() {
        let csv = "\u{feff}autopay,score,late_days,kind,amount,paid_date,due_date\n\
                   no,1.5,,rent,12,,2025-05-01\n";
        let (ds, _) = load(csv).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ds.columns.first().map(|c| c.name.as_str()),
            Some("due_date")
        );
        assert_eq!(
            ds.column("amount").map(|c| c.data.value(0)),
            Some(Value::Int(1200))
        );
    }

    #[test]
    fn empty_file_has_no_rows_error_only_without_header() {
        assert!(load_err("").contains("line 1: the file is empty"));
        let (ds, sug) = load(HEADER).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ds.rows(), 0);
        assert_eq!(sug.rows, 0);
    }

    #[test]
    fn money_error_names_line_and_column() {
        let csv =
            format!("{HEADER}2025-01-01,,1.00,rent,,0,true\n2025-01-02,,12.345,rent,,0,true\n");
        assert_eq!(
            load_err(&csv),
            "line 3, column \"amount\": \"12.345\" has more than two decimal places (money is dollars and cents)"
        );
        let e = load_err(&row("2025-01-01,,$12,rent,,0,true"));
        assert!(
            e.starts_with("line 2, column \"amount\": \"$12\" has a currency sign"),
            "{e}"
        );
        let e = load_err(&row("2025-01-01,,99999999999999999999,rent,,0,true"));
        assert!(e.contains("too large"), "{e}");
        let e = load_err(&row("2025-01-01,,12a,rent,,0,true"));
        assert!(e.contains("is not a dollar amount"), "{e}");
    }

    #[test]
    fn non_finite_floats_are_rejected() {
        for bad in ["NaN", "nan", "inf", "-inf", "infinity", "1e999", "-1e400"] {
            let e = load_err(&row(&format!("2025-01-01,,1,rent,,{bad},true")));
            assert!(
                e.starts_with("line 2, column \"score\":") && e.contains("not a finite number"),
                "{bad}: {e}"
            );
        }
        let e = load_err(&row("2025-01-01,,1,rent,,abc,true"));
        assert!(e.contains("\"abc\" is not a number"), "{e}");
    }

    #[test]
    fn other_cell_types_are_checked() {
        let e = load_err(&row("2025-1-01,,1,rent,,0,true"));
        assert!(
            e.starts_with("line 2, column \"due_date\": \"2025-1-01\" is not a date"),
            "{e}"
        );
        let e = load_err(&row("2025-02-30,,1,rent,,0,true"));
        assert!(e.contains("column \"due_date\""), "{e}");
        let e = load_err(&row("2025-01-01,,1,rent,1.5,0,true"));
        assert!(
            e.starts_with("line 2, column \"late_days\": \"1.5\" is not a whole number"),
            "{e}"
        );
        let e = load_err(&row("2025-01-01,,1,rent,,0,maybe"));
        assert!(
            e.starts_with("line 2, column \"autopay\": \"maybe\" is not a boolean"),
            "{e}"
        );
    }

    #[test]
    fn category_outside_set_is_rejected() {
        let e = load_err(&row("2025-01-01,,1,water,,0,true"));
        assert!(
            e.starts_with(
                "line 2, column \"kind\": \"water\" is not one of the declared categories"
            ),
            "{e}"
        );
        assert!(e.contains("\"rent\", \"phone\""), "{e}");
    }

    #[test]
    fn empty_cell_in_non_nullable_column_is_rejected() {
        let e = load_err(&row("2025-01-01,,,rent,,0,true"));
        assert!(
            e.starts_with(
                "line 2, column \"amount\": the cell is empty but the column is not nullable"
            ),
            "{e}"
        );
        let e = load_err(&row("2025-01-01,,1,  ,,0,true"));
        assert!(
            e.starts_with("line 2, column \"kind\": the cell is empty"),
            "{e}"
        );
    }

    #[test]
    fn wrong_field_count_is_rejected() {
        let csv = format!("{HEADER}2025-01-01,,1,rent,,0,true\n2025-01-01,,1,rent,,0\n");
        assert_eq!(
            load_err(&csv),
            "line 3: expected 7 fields (as in the header), found 6"
        );
        let csv = format!("{HEADER}2025-01-01,,1,rent,,0,true,extra\n");
        assert!(load_err(&csv).starts_with("line 2: expected 7 fields"));
    }

    #[test]
    fn line_numbers_count_quoted_newlines() {
        let csv = "kind,due_date,paid_date,amount,late_days,score,autopay\n\
                   \"rent\",2025-01-01,,1,,0,true\n\
                   \"phone\n\",2025-01-01,,1,,0,true\n\
                   rent,2025-01-01,,1,,0,oops\n";
        let e = load_err(csv);
        // The quoted cell is trimmed to a valid category; the bad row starts on line 5.
        assert!(e.starts_with("line 5, column \"autopay\""), "{e}");
    }

    #[test]
    fn line_numbers_are_exact_for_crlf_and_blank_lines() {
        let good = "2025-01-01,,1,rent,,0,true";
        let bad = "2025-01-01,,1,rent,,0,oops";
        let h = HEADER.trim_end();
        let cases = [
            (format!("{h}\n{good}\n{bad}\n"), 3),
            (format!("{h}\r\n{good}\r\n{bad}\r\n"), 3),
            (format!("{h}\r\n{bad}"), 2),
            (format!("{h}\n\n\n{bad}\n"), 4),
            (format!("{h}\r\n\r\n{good}\r\n\r\n{bad}"), 5),
            (format!("{h}\r{good}\r{bad}\r"), 3),
            (format!("{h}\n{good}\n\n\r\n{bad}"), 5),
        ];
        for (csv, want) in cases {
            let e = load_err(&csv);
            assert!(
                e.starts_with(&format!("line {want}, column \"autopay\"")),
                "{csv:?}: {e}"
            );
        }
    }

    #[test]
    fn missing_and_extra_columns_are_named() {
        let e = load_err("due_date,paid_date,amount,kind,score,autopay\n");
        assert_eq!(
            e,
            "line 1: the header lacks the declared column(s) \"late_days\"; add them to the file or remove them from the metadata"
        );
        let e = load_err("due_date,paid_date,amount,kind,late_days,score,autopay,notes,memo\n");
        assert!(
            e.starts_with("line 1: the header has column(s) \"notes\", \"memo\" that the metadata does not declare"),
            "{e}"
        );
        let e = load_err("due_date,due_date,amount,kind,late_days,score,autopay\n");
        assert!(e.contains("\"due_date\" appears twice"), "{e}");
    }

    #[test]
    fn long_fields_are_rejected() {
        let limits = IngestLimits {
            max_field_bytes: 16,
            ..IngestLimits::default()
        };
        let csv = row(&format!("2025-01-01,,1,rent,,0,{}", "t".repeat(17)));
        match load_csv(csv.as_bytes(), &meta(), &limits) {
            Err(e) => assert_eq!(
                e.to_string(),
                "line 2, column \"autopay\": the field is 17 bytes, longer than the limit of 16 bytes"
            ),
            Ok(_) => panic!("accepted a long field"),
        }
        // A huge field is stopped while reading, before it is buffered whole.
        let huge = format!(
            "{HEADER}2025-01-01,,1,rent,,0,\"{}\"\n",
            "x".repeat(4 << 20)
        );
        match load(&huge) {
            Err(IngestError::RowTooLong { line, .. }) => assert_eq!(line, 2),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("accepted a huge field"),
        }
        // The default limit accepts a field of exactly max_field_bytes.
        let ok = row(&format!("2025-01-01,,1,rent,,0{},true", " ".repeat(4095)));
        assert!(load(&ok).is_ok());
    }

    #[test]
    fn row_limits_apply() {
        let body = "2025-01-01,,1,rent,,0,true\n".repeat(3);
        let csv = format!("{HEADER}{body}");
        let limits = IngestLimits {
            max_rows: 2,
            ..IngestLimits::default()
        };
        match load_csv(csv.as_bytes(), &meta(), &limits) {
            Err(e) => assert_eq!(
                e.to_string(),
                "line 4: more than 2 rows; raise max_rows in the metadata or split the file"
            ),
            Ok(_) => panic!("accepted too many rows"),
        }
        let mut small = meta();
        small.max_rows = 1;
        assert!(matches!(
            load_csv(csv.as_bytes(), &small, &IngestLimits::default()),
            Err(IngestError::TooManyRows { line: 3, max: 1 })
        ));
        let limits = IngestLimits {
            max_columns: 3,
            ..IngestLimits::default()
        };
        assert!(matches!(
            load_csv(csv.as_bytes(), &meta(), &limits),
            Err(IngestError::TooManyDeclaredColumns {
                declared: 7,
                max: 3
            })
        ));
    }

    #[test]
    fn large_files_pass_the_read_guard() {
        // Many rows, several times the reader's buffer: the guard must never trip on valid rows.
        let body = "2025-01-01,2025-01-02,1450.00,rent,3,0.25,true\n".repeat(60_000);
        let csv = format!("{HEADER}\n{body}\n");
        let mut big = meta();
        big.max_rows = 100_000;
        let (ds, sug) = load_csv(csv.as_bytes(), &big, &IngestLimits::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ds.rows(), 60_000);
        assert_eq!(sug.rows, 60_000);
        // Blank lines are skipped but still counted in line numbers.
        let e = load_err(&format!("{HEADER}\n\n2025-01-01,,1,rent,,0,bad\n"));
        assert!(e.starts_with("line 4, column \"autopay\""), "{e}");
    }

    #[test]
    fn non_utf8_is_rejected() {
        let mut bytes = HEADER.as_bytes().to_vec();
        bytes.extend_from_slice(b"2025-01-01,,1,r\xffnt,,0,true\n");
        match load_csv(bytes.as_slice(), &meta(), &IngestLimits::default()) {
            Err(e) => assert_eq!(
                e.to_string(),
                "line 2, column \"kind\": not valid UTF-8 text; save the file as UTF-8"
            ),
            Ok(_) => panic!("accepted invalid UTF-8"),
        }
        let bytes = b"due_\xffdate\n".to_vec();
        assert!(matches!(
            load_csv(bytes.as_slice(), &meta(), &IngestLimits::default()),
            Err(IngestError::HeaderNotUtf8 { index: 1 })
        ));
    }

    #[test]
    fn money_edge_cases() {
        assert_eq!(parse_money("1450.00"), Some(145000));
        assert_eq!(parse_money("-35.5"), Some(-3550));
        assert_eq!(parse_money("12"), Some(1200));
        assert_eq!(parse_money(".5"), Some(50));
        assert_eq!(parse_money("-0.05"), Some(-5));
        assert_eq!(parse_money("-0"), Some(0));
        assert_eq!(parse_money("007.10"), Some(710));
        assert_eq!(parse_money("0.1"), Some(10));
        assert_eq!(parse_money("92233720368547758.07"), Some(i64::MAX));
        assert_eq!(parse_money("-92233720368547758.08"), Some(i64::MIN));
        assert_eq!(
            money_cents("92233720368547758.08"),
            Err(MoneyProblem::Overflow)
        );
        assert_eq!(
            money_cents("-92233720368547758.09"),
            Err(MoneyProblem::Overflow)
        );
        assert_eq!(money_cents("1.234"), Err(MoneyProblem::TooManyDecimals));
        assert_eq!(money_cents("1,234.00"), Err(MoneyProblem::Symbols));
        for bad in [
            "", "-", ".", "1.", "+1", "--1", "1.2.3", "1e3", " 1", "1-", "١",
        ] {
            assert_eq!(parse_money(bad), None, "{bad:?}");
        }
        assert_eq!(money_to_string(-3500), "-35.00");
        assert_eq!(money_to_string(-5), "-0.05");
        assert_eq!(money_to_string(0), "0.00");
        assert_eq!(money_to_string(123456), "1234.56");
        assert_eq!(money_to_string(i64::MIN), "-92233720368547758.08");
        assert_eq!(parse_money(&money_to_string(i64::MIN)), Some(i64::MIN));
        assert_eq!(parse_money(&money_to_string(i64::MAX)), Some(i64::MAX));
    }

    proptest! {
        #[test]
        fn money_round_trips(c in -1_000_000_000_000_000i64..=1_000_000_000_000_000i64) {
            prop_assert_eq!(parse_money(&money_to_string(c)), Some(c));
        }

        #[test]
        fn money_parse_never_panics(s in "\\PC{0,24}") {
            let _ = parse_money(&s);
        }

        #[test]
        fn load_never_panics(s in "[a-z0-9,\"\n.\\-]{0,200}") {
            let text = format!("{HEADER}{s}");
            let _ = load(&text);
        }
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(
            parse_date("2025-03-01"),
            NaiveDate::from_ymd_opt(2025, 3, 1)
        );
        for bad in [
            "2025-3-01",
            "2025/03/01",
            "25-03-01",
            "2025-03-01T00",
            "2025-13-01",
            "+025-03-01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    fn meta_err(text: &str) -> String {
        match parse_meta(text) {
            Ok(_) => panic!("accepted metadata {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn meta_accepts_native_toml_dates() {
        let text = META.replace(
            "window = { start = \"2025-01-01\", end = \"2025-12-31\" }",
            "window = { start = 2025-01-01, end = 2025-12-31 }",
        );
        let m = parse_meta(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            m.window,
            Some(TimeWindow {
                start: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default(),
                end: NaiveDate::from_ymd_opt(2025, 12, 31).unwrap_or_default(),
            })
        );
    }

    #[test]
    fn meta_syntax_errors_have_line_and_column() {
        let e = meta_err("name = \"x\"\nprivacy_unit = = \"event\"\n");
        assert!(e.starts_with("metadata TOML, line 2, column 16:"), "{e}");
        let e = meta_err(
            "name = \"x\"\nprivacy_unit = \"event\"\nmax_rows = 1\ncolour = 3\ncolumns = []\n",
        );
        assert!(e.contains("line 4") && e.contains("colour"), "{e}");
        let e = meta_err(&META.replace("type = \"i64\"", "type = \"int\""));
        assert!(e.contains("line 32") && e.contains("int"), "{e}");
    }

    #[test]
    fn meta_validation_errors() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "name = \"payments\"",
                "name = \"2payments\"",
                "dataset name \"2payments\" is not valid",
            ),
            (
                "name = \"payments\"",
                "name = \"pay-ments\"",
                "dataset name \"pay-ments\" is not valid",
            ),
            (
                "name = \"late_days\"",
                "name = \"late days\"",
                "column name \"late days\" is not valid",
            ),
            (
                "name = \"late_days\"",
                "name = \"amount\"",
                "column \"amount\" is declared twice",
            ),
            (
                "bounds = [0, 200000]",
                "bounds = [200000, 0]",
                "lower bound 200000 is above the upper bound 0",
            ),
            (
                "bounds = [0, 200000]",
                "bounds = [0, inf]",
                "bounds must be finite",
            ),
            (
                "bounds = [0, 200000]",
                "bounds = [nan, 1]",
                "bounds must be finite",
            ),
            (
                "type = \"bool\"",
                "type = \"bool\"\nbounds = [0, 1]",
                "bounds are allowed only on i64, f64 and money",
            ),
            (
                "type = \"bool\"",
                "type = \"bool\"\ncategories = [\"a\"]",
                "categories are allowed only on category columns",
            ),
            (
                "categories = [\"rent\", \"phone\"]",
                "categories = []",
                "the category list is empty",
            ),
            (
                "categories = [\"rent\", \"phone\"]",
                "categories = [\"rent\", \"rent\"]",
                "category \"rent\" is listed twice",
            ),
            (
                "categories = [\"rent\", \"phone\"]",
                "categories = [\"rent \"]",
                "spaces at either end",
            ),
            (
                "time_column = \"due_date\"",
                "time_column = \"due\"",
                "time_column \"due\" is not one of the declared columns",
            ),
            (
                "time_column = \"due_date\"",
                "time_column = \"amount\"",
                "time_column \"amount\" has type money",
            ),
            (
                "end = \"2025-12-31\"",
                "end = \"2024-12-31\"",
                "the window starts on 2025-01-01, after it ends on 2024-12-31",
            ),
            (
                "max_rows = 100",
                "max_rows = 0",
                "max_rows must be at least 1",
            ),
            (
                "privacy_unit = \"event\"\ntime_column = \"due_date\"",
                "privacy_unit = \"month\"",
                "privacy_unit = \"month\" needs a time_column",
            ),
        ];
        for (from, to, want) in cases {
            assert!(META.contains(from), "{from}");
            let e = meta_err(&META.replacen(from, to, 1));
            assert!(e.contains(want), "{to}: got {e}, want {want}");
        }
        let long = format!("name = \"a{}\"", "b".repeat(64));
        assert!(meta_err(&META.replacen("name = \"payments\"", &long, 1)).contains("is not valid"));
        let no_cols = "name = \"x\"\nprivacy_unit = \"event\"\nmax_rows = 1\ncolumns = []\n";
        assert!(meta_err(no_cols).contains("no columns are declared"));
    }
}
