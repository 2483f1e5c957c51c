//! The catalogue of named alternative-data attributes.
//!
//! Each attribute is a fixed computation over the sample-data schema (`rent`, `utilities`, `transactions`)
//! with a plain-language description, the exact `(dataset, column)` pairs it reads, an output type, public
//! bounds and a window. An FI asks for an attribute by name and a window end ([`crate::expr::Expr::Catalogue`]);
//! the checker verifies the inputs are published and resolves the window, and [`compute`] runs it at release.
//!
//! Windows: an attribute over "N months" ending at `window_end` covers every date from the first day of the
//! month N-1 months before `window_end`'s month through `window_end` itself (both inclusive). `window_end` is
//! normally the last day of a month (the checker enforces it), so the window is N whole calendar months.

use crate::check::{month_number, months_before};
use crate::dataset::{ColumnData, DataSource, Dataset};
use crate::eval::EvalError;
use crate::meta::Bounds;
use crate::value::{DataType, Value};
use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One named attribute: what it means, what it reads, and what it returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CatalogueEntry {
    /// Attribute name, as used in lineages and policies.
    pub name: &'static str,
    /// What the attribute measures, in plain words for FI risk teams and owners.
    pub description: &'static str,
    /// The `(dataset, column)` pairs it reads.
    pub inputs: &'static [(&'static str, &'static str)],
    /// Output type.
    pub output: DataType,
    /// Public bounds of the output (results are clamped into them).
    pub bounds: Bounds,
    /// Unit of the output.
    pub unit: &'static str,
    /// Length of the window, in words (for example "12 months", "90 days").
    pub window: &'static str,
}

/// An owned, serializable view of a [`CatalogueEntry`], for the wire and for screens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CatalogueInfo {
    /// Attribute name.
    pub name: String,
    /// What the attribute measures, in plain words.
    pub description: String,
    /// Inputs as `dataset.column`.
    pub inputs: Vec<String>,
    /// Output type.
    pub output: DataType,
    /// Public bounds of the output.
    pub bounds: Bounds,
    /// Unit of the output.
    pub unit: String,
    /// Length of the window, in words.
    pub window: String,
}

impl From<&CatalogueEntry> for CatalogueInfo {
    fn from(e: &CatalogueEntry) -> Self {
        CatalogueInfo {
            name: e.name.to_string(),
            description: e.description.to_string(),
            inputs: e.inputs.iter().map(|(d, c)| format!("{d}.{c}")).collect(),
            output: e.output,
            bounds: e.bounds,
            unit: e.unit.to_string(),
            window: e.window.to_string(),
        }
    }
}

const RENT_ON_TIME: &str = "rent_on_time_ratio_12m";
const RENT_STREAK: &str = "rent_current_streak_months";
const UTILITY_ON_TIME: &str = "utility_on_time_ratio_12m";
const NSF_COUNT: &str = "nsf_overdraft_count_90d";
const INCOME_CV: &str = "income_cv_12m";
const AVG_BALANCE: &str = "avg_daily_balance_3m";

/// Longest streak [`RENT_STREAK`] reports, in months.
const MAX_STREAK: i64 = 120;

const UTILITY_LATE_30: &str = "utility_late_30d_count_12m";
const SUBSCRIPTION_PAID: &str = "subscription_paid_ratio_12m";
const AVG_BALANCE_12M: &str = "avg_daily_balance_12m";
const NEGATIVE_DAYS: &str = "negative_balance_days_90d";
const INFLOW: &str = "inflow_90d";
const OUTFLOW: &str = "outflow_90d";
const NET_FLOW: &str = "net_cash_flow_90d";
const INCOME_MONTHS: &str = "income_months_12m";
const RENT_TO_INCOME: &str = "rent_to_income_ratio_12m";
const ACCOUNT_AGE: &str = "account_age_months";
const LIQUIDITY: &str = "liquidity_buffer_days_3m";

/// Most days in a 3-month window (July to September, or December to February in no year; 92).
const MAX_DAYS_3M: i64 = 92;

/// Longest account age [`ACCOUNT_AGE`] reports, in months.
const MAX_ACCOUNT_AGE: i64 = 600;

/// Largest amount of one transaction the DP forms of the cash-flow attributes read, in cents ($10,000):
/// larger amounts are clamped to it before noise.
pub const DP_PER_TRANSACTION: i64 = 1_000_000;

static ENTRIES: [CatalogueEntry; 6] = [
    CatalogueEntry {
        name: RENT_ON_TIME,
        description: "Share of rent payments due in the last 12 months that were paid on or before the \
                      due date (an unpaid rent counts as late). Empty when no rent was due in the window.",
        inputs: &[("rent", "due_date"), ("rent", "paid_date")],
        output: DataType::F64,
        bounds: Bounds { lo: 0.0, hi: 1.0 },
        unit: "fraction of payments",
        window: "12 months",
    },
    CatalogueEntry {
        name: RENT_STREAK,
        description: "Number of consecutive months, counting back from the last month of the window, in \
                      which rent was due and every rent payment was on time. A month with a late or missing \
                      payment, or with no rent due, ends the streak. At most 120.",
        inputs: &[("rent", "due_date"), ("rent", "paid_date")],
        output: DataType::I64,
        bounds: Bounds { lo: 0.0, hi: 120.0 },
        unit: "months",
        window: "up to 120 months",
    },
    CatalogueEntry {
        name: UTILITY_ON_TIME,
        description: "Share of utility and phone bills due in the last 12 months that were paid on or before \
                      the due date (an unpaid bill counts as late). Empty when no bill was due in the window.",
        inputs: &[("utilities", "due_date"), ("utilities", "paid_date")],
        output: DataType::F64,
        bounds: Bounds { lo: 0.0, hi: 1.0 },
        unit: "fraction of bills",
        window: "12 months",
    },
    CatalogueEntry {
        name: NSF_COUNT,
        description: "Number of overdraft and insufficient-funds (NSF) fees charged to the bank account in the \
                      90 days up to the end of the window. Capped at 100.",
        inputs: &[("transactions", "date"), ("transactions", "category")],
        output: DataType::I64,
        bounds: Bounds { lo: 0.0, hi: 100.0 },
        unit: "fees",
        window: "90 days",
    },
    CatalogueEntry {
        name: INCOME_CV,
        description: "How much monthly income varies: the standard deviation of the total income received in \
                      each of the last 12 months (a month with no income counts as zero) divided by the \
                      average. 0 means the same income every month; higher means less steady. Empty when there \
                      was no income. Capped at 10.",
        inputs: &[
            ("transactions", "date"),
            ("transactions", "category"),
            ("transactions", "amount"),
        ],
        output: DataType::F64,
        bounds: Bounds { lo: 0.0, hi: 10.0 },
        unit: "ratio (standard deviation / mean)",
        window: "12 months",
    },
    CatalogueEntry {
        name: AVG_BALANCE,
        description: "Average end-of-day bank balance over every day of the last 3 months, in cents, from the \
                      account's transactions (opening balance included). Kept within -$10,000 and $100,000.",
        inputs: &[("transactions", "date"), ("transactions", "amount")],
        output: DataType::Money,
        bounds: Bounds {
            lo: -1_000_000.0,
            hi: 10_000_000.0,
        },
        unit: "USD cents",
        window: "3 months",
    },
];

/// Cash-flow, subscription, bill and account attributes, after the first six.
static MORE_ENTRIES: [CatalogueEntry; 11] = [
    CatalogueEntry {
        name: UTILITY_LATE_30,
        description: "Number of utility and phone bills due in the last 12 months that were more than 30 days \
                      late: paid more than 30 days after the due date, or still unpaid more than 30 days after \
                      it at the end of the window. Bills due in the window's last 30 days cannot be that late yet \
                      and do not count. At most 120.",
        inputs: &[("utilities", "due_date"), ("utilities", "paid_date")],
        output: DataType::I64,
        bounds: Bounds { lo: 0.0, hi: 120.0 },
        unit: "bills",
        window: "12 months",
    },
    CatalogueEntry {
        name: SUBSCRIPTION_PAID,
        description: "Subscription payment consistency: the share of subscription charges (streaming, music, \
                      gym, cloud storage) in the last 12 months that went through rather than being declined. \
                      Empty when there was no charge in the window.",
        inputs: &[("subscriptions", "charge_date"), ("subscriptions", "status")],
        output: DataType::F64,
        bounds: Bounds { lo: 0.0, hi: 1.0 },
        unit: "fraction of charges",
        window: "12 months",
    },
    CatalogueEntry {
        name: AVG_BALANCE_12M,
        description: "Average end-of-day bank balance over every day of the last 12 months, in cents, from the \
                      account's transactions (opening balance included). Kept within -$10,000 and $100,000.",
        inputs: &[("transactions", "date"), ("transactions", "amount")],
        output: DataType::Money,
        bounds: Bounds {
            lo: -1_000_000.0,
            hi: 10_000_000.0,
        },
        unit: "USD cents",
        window: "12 months",
    },
    CatalogueEntry {
        name: NEGATIVE_DAYS,
        description: "Number of days among the last 90 of the window that ended with the bank balance below \
                      zero (the balance at the end of a day is the sum of every amount up to that day).",
        inputs: &[("transactions", "date"), ("transactions", "amount")],
        output: DataType::I64,
        bounds: Bounds { lo: 0.0, hi: 90.0 },
        unit: "days",
        window: "90 days",
    },
    CatalogueEntry {
        name: INFLOW,
        description: "Total money into the bank account in the last 90 days of the window, in cents: every \
                      credit (pay, transfers in, refunds), not counting the opening balance. Kept within \
                      $100,000.",
        inputs: &[
            ("transactions", "date"),
            ("transactions", "amount"),
            ("transactions", "category"),
        ],
        output: DataType::Money,
        bounds: Bounds {
            lo: 0.0,
            hi: 10_000_000.0,
        },
        unit: "USD cents",
        window: "90 days",
    },
    CatalogueEntry {
        name: OUTFLOW,
        description: "Total money out of the bank account in the last 90 days of the window, in cents, as a \
                      positive number: every debit (rent, bills, spending, fees, transfers out). Kept within \
                      $100,000.",
        inputs: &[("transactions", "date"), ("transactions", "amount")],
        output: DataType::Money,
        bounds: Bounds {
            lo: 0.0,
            hi: 10_000_000.0,
        },
        unit: "USD cents",
        window: "90 days",
    },
    CatalogueEntry {
        name: NET_FLOW,
        description: "Net cash flow of the last 90 days of the window, in cents: money in minus money out, not \
                      counting the opening balance. Negative when the account is being drawn down. Kept within \
                      -$100,000 and $100,000.",
        inputs: &[
            ("transactions", "date"),
            ("transactions", "amount"),
            ("transactions", "category"),
        ],
        output: DataType::Money,
        bounds: Bounds {
            lo: -10_000_000.0,
            hi: 10_000_000.0,
        },
        unit: "USD cents",
        window: "90 days",
    },
    CatalogueEntry {
        name: INCOME_MONTHS,
        description: "Income regularity: in how many of the last 12 calendar months at least one income payment \
                      arrived (pay, gig payouts). 12 means income every month.",
        inputs: &[("transactions", "date"), ("transactions", "category")],
        output: DataType::I64,
        bounds: Bounds { lo: 0.0, hi: 12.0 },
        unit: "months",
        window: "12 months",
    },
    CatalogueEntry {
        name: RENT_TO_INCOME,
        description: "Rent paid from the bank account in the last 12 months divided by the income received in \
                      them (both from the account's transactions). 0.3 means 30% of income went to rent. Empty \
                      when there was no income. Capped at 2.",
        inputs: &[
            ("transactions", "date"),
            ("transactions", "amount"),
            ("transactions", "category"),
        ],
        output: DataType::F64,
        bounds: Bounds { lo: 0.0, hi: 2.0 },
        unit: "ratio (rent / income)",
        window: "12 months",
    },
    CatalogueEntry {
        name: ACCOUNT_AGE,
        description: "Age of the bank account as far as its history goes: the calendar months from the month of \
                      its first transaction through the window's last month, both counted. 0 when there is no \
                      transaction by the end of the window. At most 600.",
        inputs: &[("transactions", "date")],
        output: DataType::I64,
        bounds: Bounds { lo: 0.0, hi: 600.0 },
        unit: "months",
        window: "up to 600 months",
    },
    CatalogueEntry {
        name: LIQUIDITY,
        description: "Liquidity buffer: how many days of the account's spending its average balance covers, over \
                      the last 3 months (the sum of the end-of-day balances divided by the money that left the \
                      account). 30 means the balance holds about a month of expenses; 0 when the average balance \
                      is below zero. Empty when no money left the account. At most 730.",
        inputs: &[("transactions", "date"), ("transactions", "amount")],
        output: DataType::F64,
        bounds: Bounds { lo: 0.0, hi: 730.0 },
        unit: "days of spending",
        window: "3 months",
    },
];

/// Every entry, the first six then the rest, in one list.
static ALL_ENTRIES: std::sync::LazyLock<Vec<CatalogueEntry>> =
    std::sync::LazyLock::new(|| ENTRIES.iter().chain(&MORE_ENTRIES).copied().collect());
/// The adverse-action reason of each attribute: a short phrase saying, in an applicant's words, what about
/// this attribute cost points (for a decline with reasons). Kept beside [`ENTRIES`], keyed by name, so an
/// entry's literal does not change; an attribute without a phrase gets [`CatalogueEntry::reason`]'s
/// generic one.
static REASONS: [(&str, &str); 17] = [
    (RENT_ON_TIME, "rent paid late in the last 12 months"),
    (RENT_STREAK, "too few months of on-time rent in a row"),
    (
        UTILITY_ON_TIME,
        "utility or phone bills paid late in the last 12 months",
    ),
    (
        NSF_COUNT,
        "overdraft or insufficient-funds fees in the last 90 days",
    ),
    (INCOME_CV, "income that varied from month to month"),
    (
        AVG_BALANCE,
        "low average bank balance over the last 3 months",
    ),
    (
        UTILITY_LATE_30,
        "utility or phone bills more than 30 days late in the last 12 months",
    ),
    (
        SUBSCRIPTION_PAID,
        "subscription charges declined in the last 12 months",
    ),
    (
        AVG_BALANCE_12M,
        "low average bank balance over the last 12 months",
    ),
    (
        NEGATIVE_DAYS,
        "days with a negative bank balance in the last 90 days",
    ),
    (INFLOW, "little money coming in over the last 90 days"),
    (OUTFLOW, "high spending over the last 90 days"),
    (
        NET_FLOW,
        "more money going out than coming in over the last 90 days",
    ),
    (INCOME_MONTHS, "months without income in the last 12 months"),
    (RENT_TO_INCOME, "rent high compared with income"),
    (ACCOUNT_AGE, "a short bank account history"),
    (LIQUIDITY, "savings that would cover few days of expenses"),
];

impl CatalogueEntry {
    /// The attribute as an adverse-action reason, in plain words ("rent paid late in the last 12 months");
    /// for an attribute without its own phrase, "the value of NAME".
    pub fn reason(&self) -> String {
        REASONS
            .iter()
            .find(|(name, _)| *name == self.name)
            .map_or_else(
                || format!("the value of {}", self.name),
                |(_, r)| (*r).to_owned(),
            )
    }
}

/// Every catalogue attribute, in a fixed order.
pub fn entries() -> &'static [CatalogueEntry] {
    &ALL_ENTRIES
}

/// The attribute with this name.
pub fn entry(name: &str) -> Option<&'static CatalogueEntry> {
    entries().iter().find(|e| e.name == name)
}

/// Compute the attribute `name` over the window ending at `window_end` (normally the last day of a month).
///
/// Results are clamped into the entry's public bounds. Rows with a missing date or amount are skipped.
pub fn compute(
    name: &str,
    window_end: NaiveDate,
    data: &dyn DataSource,
) -> Result<Value, EvalError> {
    let e =
        entry(name).ok_or_else(|| EvalError::Other(format!("no catalogue attribute `{name}`")))?;
    let value = match e.name {
        RENT_ON_TIME => on_time_ratio(dataset(data, "rent")?, window_end, 12)?,
        UTILITY_ON_TIME => on_time_ratio(dataset(data, "utilities")?, window_end, 12)?,
        RENT_STREAK => rent_streak(dataset(data, "rent")?, window_end)?,
        NSF_COUNT => nsf_count(dataset(data, "transactions")?, window_end)?,
        INCOME_CV => income_cv(dataset(data, "transactions")?, window_end)?,
        AVG_BALANCE => avg_daily_balance(dataset(data, "transactions")?, window_end, 3)?,
        AVG_BALANCE_12M => avg_daily_balance(dataset(data, "transactions")?, window_end, 12)?,
        UTILITY_LATE_30 | NEGATIVE_DAYS | INFLOW | OUTFLOW | NET_FLOW | INCOME_MONTHS => {
            Value::Int(saturate(total(&form_values(e.name, 0, window_end, data)?)))
        }
        SUBSCRIPTION_PAID | RENT_TO_INCOME | LIQUIDITY => {
            let num = total(&form_values(e.name, 0, window_end, data)?);
            let den = total(&form_values(e.name, 1, window_end, data)?);
            if den <= 0 {
                Value::Null
            } else {
                Value::Float(num as f64 / den as f64)
            }
        }
        ACCOUNT_AGE => account_age(dataset(data, "transactions")?, window_end)?,
        other => {
            return Err(EvalError::Other(format!(
                "catalogue attribute `{other}` has no computation"
            )))
        }
    };
    Ok(clamp_to(value, e.bounds))
}

/// Clamp a numeric result into public bounds, keeping its variant.
fn clamp_to(v: Value, b: Bounds) -> Value {
    match v {
        Value::Int(i) => {
            let lo = b.lo.ceil() as i64;
            let hi = b.hi.floor() as i64;
            Value::Int(i.max(lo).min(hi))
        }
        Value::Float(f) => Value::Float(f.max(b.lo).min(b.hi)),
        other => other,
    }
}

fn dataset<'d>(data: &'d dyn DataSource, name: &str) -> Result<&'d Dataset, EvalError> {
    data.dataset(name)
        .ok_or_else(|| EvalError::MissingDataset(name.to_string()))
}

fn column<'d>(ds: &'d Dataset, name: &str) -> Result<&'d ColumnData, EvalError> {
    ds.column(name)
        .map(|c| &c.data)
        .ok_or_else(|| EvalError::MissingColumn {
            dataset: ds.meta.name.clone(),
            column: name.to_string(),
        })
}

fn wrong_type(ds: &Dataset, name: &str, want: &str) -> EvalError {
    EvalError::Other(format!(
        "column `{}.{name}` does not hold {want}",
        ds.meta.name
    ))
}

fn dates<'d>(ds: &'d Dataset, name: &str) -> Result<&'d [Option<NaiveDate>], EvalError> {
    match column(ds, name)? {
        ColumnData::Date(v) => Ok(v),
        _ => Err(wrong_type(ds, name, "dates")),
    }
}

fn ints<'d>(ds: &'d Dataset, name: &str) -> Result<&'d [Option<i64>], EvalError> {
    match column(ds, name)? {
        ColumnData::Int(v) => Ok(v),
        _ => Err(wrong_type(ds, name, "integers or money")),
    }
}

fn cats<'d>(ds: &'d Dataset, name: &str) -> Result<&'d [Option<String>], EvalError> {
    match column(ds, name)? {
        ColumnData::Cat(v) => Ok(v),
        _ => Err(wrong_type(ds, name, "categories")),
    }
}

/// First day of the `months`-month window ending at `window_end`.
fn window_start(window_end: NaiveDate, months: u32) -> Result<NaiveDate, EvalError> {
    months_before(window_end, months.saturating_sub(1))
        .ok_or_else(|| EvalError::Other(format!("window ending {window_end} is out of range")))
}

/// Fraction of rows due in the window that were paid on or before their due date.
fn on_time_ratio(ds: &Dataset, window_end: NaiveDate, months: u32) -> Result<Value, EvalError> {
    let start = window_start(window_end, months)?;
    let due = dates(ds, "due_date")?;
    let paid = dates(ds, "paid_date")?;
    let (mut total, mut on_time) = (0u64, 0u64);
    for (d, p) in due.iter().zip(paid) {
        let Some(d) = *d else { continue };
        if d < start || d > window_end {
            continue;
        }
        total += 1;
        if p.is_some_and(|p| p <= d) {
            on_time += 1;
        }
    }
    Ok(if total == 0 {
        Value::Null
    } else {
        Value::Float(on_time as f64 / total as f64)
    })
}

/// Consecutive months back from `window_end`'s month with rent due and all of it paid on time.
fn rent_streak(ds: &Dataset, window_end: NaiveDate) -> Result<Value, EvalError> {
    let due = dates(ds, "due_date")?;
    let paid = dates(ds, "paid_date")?;
    let last = month_number(window_end);
    let first = last - (MAX_STREAK - 1);
    // Month number -> whether every rent row due that month was paid on time.
    let mut months: BTreeMap<i64, bool> = BTreeMap::new();
    for (d, p) in due.iter().zip(paid) {
        let Some(d) = *d else { continue };
        let m = month_number(d);
        if d > window_end || m < first {
            continue;
        }
        let ok = p.is_some_and(|p| p <= d);
        let all = months.entry(m).or_insert(true);
        *all = *all && ok;
    }
    let mut streak = 0i64;
    while streak < MAX_STREAK && months.get(&(last - streak)) == Some(&true) {
        streak += 1;
    }
    Ok(Value::Int(streak))
}

/// Overdraft and NSF fees with a date in `(window_end - 90 days, window_end]`.
fn nsf_count(ds: &Dataset, window_end: NaiveDate) -> Result<Value, EvalError> {
    let date = dates(ds, "date")?;
    let category = cats(ds, "category")?;
    let after = window_end.checked_sub_days(Days::new(90));
    let count = date
        .iter()
        .zip(category)
        .filter(|(d, c)| {
            d.is_some_and(|d| d <= window_end && after.is_none_or(|a| d > a))
                && c.as_deref()
                    .is_some_and(|c| c == "nsf_fee" || c == "overdraft_fee")
        })
        .count();
    Ok(Value::Int(i64::try_from(count).unwrap_or(i64::MAX)))
}

/// Coefficient of variation of the 12 monthly income totals.
fn income_cv(ds: &Dataset, window_end: NaiveDate) -> Result<Value, EvalError> {
    const MONTHS: usize = 12;
    let start = window_start(window_end, MONTHS as u32)?;
    let first = month_number(start);
    let date = dates(ds, "date")?;
    let category = cats(ds, "category")?;
    let amount = ints(ds, "amount")?;
    let mut totals = [0i128; MONTHS];
    for ((d, c), a) in date.iter().zip(category).zip(amount) {
        let (Some(d), Some(c), Some(a)) = (*d, c.as_deref(), *a) else {
            continue;
        };
        if c != "income" || d < start || d > window_end {
            continue;
        }
        let slot = usize::try_from(month_number(d) - first)
            .ok()
            .and_then(|i| totals.get_mut(i));
        if let Some(t) = slot {
            *t += i128::from(a);
        }
    }
    let n = MONTHS as f64;
    let mean = totals.iter().map(|&t| t as f64).sum::<f64>() / n;
    if mean.is_nan() || mean <= 0.0 {
        return Ok(Value::Null);
    }
    let var = totals
        .iter()
        .map(|&t| {
            let d = t as f64 - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    let cv = var.sqrt() / mean;
    Ok(if cv.is_finite() {
        Value::Float(cv)
    } else {
        Value::Null
    })
}

/// Average end-of-day balance over the `months`-month window, in cents, rounded to the nearest cent (halves away
/// from zero). The balance at the end of day `d` is the sum of every amount dated on or before `d`.
fn avg_daily_balance(ds: &Dataset, window_end: NaiveDate, months: u32) -> Result<Value, EvalError> {
    let start = window_start(window_end, months)?;
    let balances = daily_balances(ds, start, window_end)?;
    let total: i128 = balances.iter().sum();
    let avg = round_div(total, balances.len() as i128);
    Ok(Value::Int(i64::try_from(avg).unwrap_or(if avg < 0 {
        i64::MIN
    } else {
        i64::MAX
    })))
}

/// The end-of-day balance of each day from `start` through `end` (at least one day): the sum of every amount
/// dated on or before that day.
fn daily_balances(ds: &Dataset, start: NaiveDate, end: NaiveDate) -> Result<Vec<i128>, EvalError> {
    let days = usize::try_from((end - start).num_days() + 1)
        .ok()
        .filter(|d| *d > 0)
        .ok_or_else(|| EvalError::Other("empty balance window".to_string()))?;
    let date = dates(ds, "date")?;
    let amount = ints(ds, "amount")?;
    // Balance at the start of the window, and the net change on each day of it.
    let mut opening: i128 = 0;
    let mut change = vec![0i128; days];
    for (d, a) in date.iter().zip(amount) {
        let (Some(d), Some(a)) = (*d, *a) else {
            continue;
        };
        if d < start {
            opening += i128::from(a);
        } else if d <= end {
            let slot = usize::try_from((d - start).num_days())
                .ok()
                .and_then(|i| change.get_mut(i));
            if let Some(c) = slot {
                *c += i128::from(a);
            }
        }
    }
    let mut balance = opening;
    Ok(change
        .iter()
        .map(|c| {
            balance += c;
            balance
        })
        .collect())
}

/// The sum of some values, exactly.
fn total(values: &[i64]) -> i128 {
    values.iter().map(|v| i128::from(*v)).sum()
}

/// An exact total as an `i64`, saturating (results are clamped into far narrower public bounds anyway).
fn saturate(t: i128) -> i64 {
    i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
}

/// First day of the 90-day window ending at `window_end` (the window is 90 days, both ends included).
fn ninety_days(window_end: NaiveDate) -> Result<NaiveDate, EvalError> {
    window_end
        .checked_sub_days(Days::new(89))
        .ok_or_else(|| EvalError::Other(format!("window ending {window_end} is out of range")))
}

/// Calendar months from the month of the first transaction through `window_end`'s month, both counted.
fn account_age(ds: &Dataset, window_end: NaiveDate) -> Result<Value, EvalError> {
    let first = dates(ds, "date")?
        .iter()
        .flatten()
        .filter(|d| **d <= window_end)
        .min();
    Ok(Value::Int(first.map_or(0, |f| {
        (month_number(window_end) - month_number(*f) + 1).min(MAX_ACCOUNT_AGE)
    })))
}

/// `num / den` rounded to the nearest integer, halves away from zero (`den > 0`).
fn round_div(num: i128, den: i128) -> i128 {
    if den <= 0 {
        return 0;
    }
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den {
        q + num.signum()
    } else {
        q
    }
}

/// How far one privacy unit can move the values of one part of a [`DpForm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpReach {
    /// One value per row of the dataset, computed from that row alone: a unit adds or removes as many values
    /// as it has rows (one for `event`, the declared `max_rows_per_month` for `month`), each within the part's
    /// bounds.
    Rows,
    /// A fixed number of values (one per month of the window, or a single one), of which any one unit, an
    /// event or a month, can change at most one, within the part's bounds.
    OneValue,
}

/// One noisy sum of a [`DpForm`]: the values of [`dp_values`], each clamped into `[lo, hi]`, then summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpPart {
    /// Lower clamp bound of each value.
    pub lo: i64,
    /// Upper clamp bound of each value.
    pub hi: i64,
    /// How far one privacy unit moves the values.
    pub reach: DpReach,
}

/// How the noisy sums of a [`DpForm`] make the answer (post-processing, after noise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DpCombine {
    /// The one noisy sum is the answer.
    Sum,
    /// The first noisy sum over the second; no value when the second is below 1.
    Ratio,
}

/// The DP form of a catalogue attribute released as noisy sums over one dataset: its parts (the budget is
/// split evenly between them) and how they make the answer. The answer is then clamped into the attribute's
/// public bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct DpForm {
    /// The dataset every part reads (a DP release reads one dataset, whose privacy unit applies).
    pub dataset: &'static str,
    /// The noisy sums.
    pub parts: Vec<DpPart>,
    /// How they make the answer.
    pub combine: DpCombine,
}

/// The DP form of an attribute that is released as noisy sums of [`dp_values`] (the attributes with a lineage,
/// the income CV, the average daily balances and the ones unsuited to DP have none; see [`dp_lineage`]).
///
/// | attribute | values summed | sensitivity, `event` | sensitivity, `month` (k rows a month) |
/// | --- | --- | --- | --- |
/// | `utility_late_30d_count_12m` | 1 per bill more than 30 days late | 1 | k |
/// | `subscription_paid_ratio_12m` | 1 per paid charge; over 1 per charge | 1 and 1 | k and k |
/// | `negative_balance_days_90d` | the count itself, in [0, 90] | 90 | 90 |
/// | `inflow_90d` | each credit, clamped to [0, $10,000] | $10,000 | k x $10,000 |
/// | `outflow_90d` | each debit as a positive amount, clamped to [0, $10,000] | $10,000 | k x $10,000 |
/// | `net_cash_flow_90d` | each amount, clamped to [-$10,000, $10,000] | $10,000 | k x $10,000 |
/// | `income_months_12m` | 1 per month with income, 12 values | 1 | 1 |
/// | `rent_to_income_ratio_12m` | each rent payment, over each income payment, clamped to [0, $10,000] | $10,000 and $10,000 | k x $10,000 each |
/// | `liquidity_buffer_days_3m` | each transaction x its days in the window (clamped to $10,000 x 92), over each debit (clamped to $10,000) | $920,000 and $10,000 | k x each |
pub fn dp_form(name: &str) -> Option<DpForm> {
    let rows = |lo, hi| DpPart {
        lo,
        hi,
        reach: DpReach::Rows,
    };
    let one = |hi| DpPart {
        lo: 0,
        hi,
        reach: DpReach::OneValue,
    };
    let (dataset, parts, combine) = match name {
        UTILITY_LATE_30 => ("utilities", vec![rows(0, 1)], DpCombine::Sum),
        SUBSCRIPTION_PAID => (
            "subscriptions",
            vec![rows(0, 1), rows(0, 1)],
            DpCombine::Ratio,
        ),
        NEGATIVE_DAYS => ("transactions", vec![one(90)], DpCombine::Sum),
        INFLOW | OUTFLOW => (
            "transactions",
            vec![rows(0, DP_PER_TRANSACTION)],
            DpCombine::Sum,
        ),
        NET_FLOW => (
            "transactions",
            vec![rows(-DP_PER_TRANSACTION, DP_PER_TRANSACTION)],
            DpCombine::Sum,
        ),
        INCOME_MONTHS => ("transactions", vec![one(1)], DpCombine::Sum),
        RENT_TO_INCOME => (
            "transactions",
            vec![rows(0, DP_PER_TRANSACTION), rows(0, DP_PER_TRANSACTION)],
            DpCombine::Ratio,
        ),
        LIQUIDITY => (
            "transactions",
            vec![
                rows(
                    -DP_PER_TRANSACTION * MAX_DAYS_3M,
                    DP_PER_TRANSACTION * MAX_DAYS_3M,
                ),
                rows(0, DP_PER_TRANSACTION),
            ],
            DpCombine::Ratio,
        ),
        _ => return None,
    };
    Some(DpForm {
        dataset,
        parts,
        combine,
    })
}

/// The values part `part` of `name`'s [`DpForm`] sums over the window ending at `window_end`, each clamped
/// into the part's bounds. Without the clamps (which sample-scale data never reaches), summing them (and
/// dividing, for a ratio) gives [`compute`]'s value before its clamp into the public bounds.
pub fn dp_values(
    name: &str,
    part: usize,
    window_end: NaiveDate,
    data: &dyn DataSource,
) -> Result<Vec<i64>, EvalError> {
    let form = dp_form(name)
        .ok_or_else(|| EvalError::Other(format!("`{name}` has no dp form of noisy sums")))?;
    let p = form
        .parts
        .get(part)
        .ok_or_else(|| EvalError::Other(format!("the dp form of `{name}` has no part {part}")))?;
    Ok(form_values(name, part, window_end, data)?
        .into_iter()
        .map(|v| v.clamp(p.lo, p.hi))
        .collect())
}

/// The unclamped values of part `part` of `name`'s DP form: one per relevant row for [`DpReach::Rows`] (rows
/// that would add zero are left out), the fixed list for [`DpReach::OneValue`].
fn form_values(
    name: &str,
    part: usize,
    window_end: NaiveDate,
    data: &dyn DataSource,
) -> Result<Vec<i64>, EvalError> {
    let twelve = || window_start(window_end, 12);
    match (name, part) {
        (UTILITY_LATE_30, 0) => {
            let ds = dataset(data, "utilities")?;
            let start = twelve()?;
            let due = dates(ds, "due_date")?;
            let paid = dates(ds, "paid_date")?;
            Ok(due
                .iter()
                .zip(paid)
                .filter_map(|(d, p)| {
                    let d = (*d)?;
                    let deadline = d.checked_add_days(Days::new(30))?;
                    let late =
                        d >= start && deadline < window_end && p.is_none_or(|p| p > deadline);
                    late.then_some(1)
                })
                .collect())
        }
        (SUBSCRIPTION_PAID, 0 | 1) => {
            let ds = dataset(data, "subscriptions")?;
            let start = twelve()?;
            let date = dates(ds, "charge_date")?;
            let status = cats(ds, "status")?;
            Ok(date
                .iter()
                .zip(status)
                .filter(|(d, _)| d.is_some_and(|d| d >= start && d <= window_end))
                .map(|(_, s)| {
                    let paid = s.as_deref() == Some("paid");
                    i64::from(part == 1 || paid)
                })
                .collect())
        }
        (NEGATIVE_DAYS, 0) => {
            let ds = dataset(data, "transactions")?;
            let days = daily_balances(ds, ninety_days(window_end)?, window_end)?;
            let negative = days.iter().filter(|b| **b < 0).count();
            Ok(vec![i64::try_from(negative).unwrap_or(i64::MAX)])
        }
        (INFLOW | OUTFLOW | NET_FLOW, 0) => {
            let ds = dataset(data, "transactions")?;
            let start = ninety_days(window_end)?;
            let date = dates(ds, "date")?;
            let amount = ints(ds, "amount")?;
            let opening: Vec<bool> = if name == OUTFLOW {
                // A debit is never the opening balance; the category is not read.
                vec![false; date.len()]
            } else {
                cats(ds, "category")?
                    .iter()
                    .map(|c| c.as_deref() == Some("opening_balance"))
                    .collect()
            };
            Ok(date
                .iter()
                .zip(amount)
                .zip(opening)
                .filter_map(|((d, a), opening)| {
                    let (d, a) = ((*d)?, (*a)?);
                    if opening || d < start || d > window_end {
                        return None;
                    }
                    match name {
                        INFLOW => (a > 0).then_some(a),
                        OUTFLOW => (a < 0).then(|| a.saturating_neg()),
                        _ => Some(a),
                    }
                })
                .collect())
        }
        (INCOME_MONTHS, 0) => {
            let ds = dataset(data, "transactions")?;
            let start = twelve()?;
            let first = month_number(start);
            let mut months = vec![0i64; 12];
            for (d, c) in dates(ds, "date")?.iter().zip(cats(ds, "category")?) {
                let (Some(d), Some("income")) = (*d, c.as_deref()) else {
                    continue;
                };
                if d < start || d > window_end {
                    continue;
                }
                let slot = usize::try_from(month_number(d) - first)
                    .ok()
                    .and_then(|i| months.get_mut(i));
                if let Some(m) = slot {
                    *m = 1;
                }
            }
            Ok(months)
        }
        (RENT_TO_INCOME, 0 | 1) => {
            let ds = dataset(data, "transactions")?;
            let start = twelve()?;
            let want = if part == 0 { "rent" } else { "income" };
            let date = dates(ds, "date")?;
            let amount = ints(ds, "amount")?;
            let category = cats(ds, "category")?;
            Ok(date
                .iter()
                .zip(amount)
                .zip(category)
                .filter_map(|((d, a), c)| {
                    let (d, a) = ((*d)?, (*a)?);
                    if c.as_deref() != Some(want) || d < start || d > window_end {
                        return None;
                    }
                    // Rent leaves the account (negative), income arrives (positive).
                    Some(if part == 0 {
                        a.saturating_neg().max(0)
                    } else {
                        a.max(0)
                    })
                })
                .collect())
        }
        (LIQUIDITY, 0 | 1) => {
            // Part 0: each transaction up to the end times the days of the window on or after it (their sum is
            // the sum of the end-of-day balances); part 1: each debit in the window, as a positive amount.
            let ds = dataset(data, "transactions")?;
            let start = window_start(window_end, 3)?;
            let date = dates(ds, "date")?;
            let amount = ints(ds, "amount")?;
            Ok(date
                .iter()
                .zip(amount)
                .filter_map(|(d, a)| {
                    let (d, a) = ((*d)?, (*a)?);
                    if d > window_end {
                        return None;
                    }
                    if part == 0 {
                        let days = (window_end - d.max(start)).num_days() + 1;
                        Some(a.saturating_mul(days))
                    } else {
                        (d >= start && a < 0).then(|| a.saturating_neg())
                    }
                })
                .collect())
        }
        _ => Err(EvalError::Other(format!(
            "the dp form of `{name}` has no part {part}"
        ))),
    }
}

/// How a catalogue attribute is released with differential privacy, for the table in the docs.
///
/// | attribute | DP form | sensitivity (event unit; a month unit multiplies by its row bound) |
/// | --- | --- | --- |
/// | `rent_on_time_ratio_12m` | noisy count of on-time rent payments / 12 (public: one rent a month) | 1/12 |
/// | `utility_on_time_ratio_12m` | noisy count of on-time bills / (12 x declared kinds of bill) | 1/(12 k) |
/// | `nsf_overdraft_count_90d` | noisy count of fee transactions | 1 |
/// | `income_cv_12m` | noisy sum and noisy sum of squares of the 12 monthly income totals (each income clamped to $10,000, each total to $20,000), post-processed | one monthly total: $20,000 and $20,000^2 |
/// | `avg_daily_balance_3m` | noisy sum over transactions of amount (clamped to $10,000) x days of the window on or after it, divided by the days | $10,000 |
/// | `rent_current_streak_months` | unsuited: one late payment can change it by the whole history | - |
/// | `avg_daily_balance_12m` | as `avg_daily_balance_3m`, over the days of 12 months | $10,000 |
/// | `account_age_months` | unsuited: one transaction (the first) can change it by the whole history | - |
/// | the rest | noisy sums of per-row or per-month values, [`dp_form`] | see [`dp_form`] |
///
/// Returns the lineage whose DP release gives the attribute (a count over public filters, divided by a public
/// denominator where the attribute is a ratio), or why there is none: the streak and the account age are
/// unsuited to DP, the income CV and the average daily balances have DP forms of their own in the node, and the
/// attributes with a [`dp_form`] are released from its noisy sums, not lineages.
pub fn dp_lineage(
    name: &str,
    window_end: NaiveDate,
    metas: &BTreeMap<String, crate::meta::DatasetMeta>,
) -> Result<crate::expr::Expr, String> {
    use crate::expr::{AggKind, ArithOp, CmpOp, Expr, Pred};
    let start = |months: u32| {
        months_before(window_end, months.saturating_sub(1))
            .map(crate::check::month_start)
            .ok_or_else(|| "the window starts before the calendar does".to_string())
    };
    let on_time = |dataset: &str, from: NaiveDate| Expr::Aggregate {
        kind: AggKind::Count,
        input: Box::new(Expr::Filter {
            input: Box::new(Expr::Dataset {
                name: dataset.into(),
            }),
            pred: Pred::And(
                Box::new(Pred::Between {
                    column: "due_date".into(),
                    from,
                    to: window_end,
                }),
                Box::new(Pred::CompareColumns {
                    left: "paid_date".into(),
                    op: CmpOp::Le,
                    right: "due_date".into(),
                }),
            ),
        }),
    };
    let ratio = |count: Expr, denominator: f64| Expr::Arith {
        op: ArithOp::Div,
        left: Box::new(count),
        right: Box::new(Expr::Literal {
            value: Value::Float(denominator),
        }),
    };
    match name {
        "rent_on_time_ratio_12m" => Ok(ratio(on_time("rent", start(12)?), 12.0)),
        "utility_on_time_ratio_12m" => {
            let kinds = metas
                .get("utilities")
                .and_then(|m| m.column("kind"))
                .and_then(|c| c.categories.as_ref())
                .map(|c| c.len())
                .filter(|k| *k > 0)
                .ok_or_else(|| {
                    "the utilities dataset declares no public set of bill kinds for the denominator".to_string()
                })?;
            Ok(ratio(on_time("utilities", start(12)?), 12.0 * kinds as f64))
        }
        "nsf_overdraft_count_90d" => {
            let from = window_end
                .checked_sub_days(Days::new(89))
                .ok_or_else(|| "the window starts before the calendar does".to_string())?;
            let fee = |c: &str| Pred::Compare {
                column: "category".into(),
                op: CmpOp::Eq,
                value: Value::Str(c.into()),
            };
            Ok(Expr::Aggregate {
                kind: AggKind::Count,
                input: Box::new(Expr::Filter {
                    input: Box::new(Expr::Dataset {
                        name: "transactions".into(),
                    }),
                    pred: Pred::And(
                        Box::new(Pred::Between {
                            column: "date".into(),
                            from,
                            to: window_end,
                        }),
                        Box::new(Pred::Or(
                            Box::new(fee("nsf_fee")),
                            Box::new(fee("overdraft_fee")),
                        )),
                    ),
                }),
            })
        }
        "income_cv_12m" => Err(
            "income_cv_12m is released from noisy sums, not through a lineage".into(),
        ),
        "avg_daily_balance_3m" => Err(
            "avg_daily_balance_3m is released from a noisy sum of balance weights, not through a lineage".into(),
        ),
        "rent_current_streak_months" => Err(
            "rent_current_streak_months is unsuited to dp: one late payment can change it by the whole history"
                .into(),
        ),
        AVG_BALANCE_12M => Err(format!(
            "{AVG_BALANCE_12M} is released from a noisy sum of balance weights, not through a lineage"
        )),
        ACCOUNT_AGE => Err(format!(
            "{ACCOUNT_AGE} is unsuited to dp: one transaction (the first) can change it by the whole history"
        )),
        other if dp_form(other).is_some() => Err(format!(
            "{other} is released from noisy sums of its own (catalogue::dp_form), not through a lineage"
        )),
        other => Err(format!("no catalogue attribute named `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Column;
    use crate::meta::{ColumnMeta, DatasetMeta, PrivacyUnit};

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn meta(name: &str, cols: &[(&str, DataType)]) -> DatasetMeta {
        DatasetMeta {
            name: name.to_string(),
            description: String::new(),
            tags: vec![],
            privacy_unit: PrivacyUnit::Event,
            time_column: None,
            window: None,
            max_rows: 1000,
            max_rows_per_month: None,
            columns: cols
                .iter()
                .map(|(n, t)| ColumnMeta {
                    name: n.to_string(),
                    dtype: *t,
                    description: String::new(),
                    unit: None,
                    bounds: None,
                    categories: None,
                    nullable: true,
                })
                .collect(),
        }
    }

    /// A `rent` or `utilities` dataset from (due, paid) pairs.
    fn bills(name: &str, rows: &[(&str, Option<&str>)]) -> Dataset {
        Dataset {
            meta: meta(
                name,
                &[("due_date", DataType::Date), ("paid_date", DataType::Date)],
            ),
            version: 1,
            columns: vec![
                Column {
                    name: "due_date".into(),
                    data: ColumnData::Date(rows.iter().map(|r| Some(d(r.0))).collect()),
                },
                Column {
                    name: "paid_date".into(),
                    data: ColumnData::Date(rows.iter().map(|r| r.1.map(d)).collect()),
                },
            ],
        }
    }

    /// A `transactions` dataset from (date, amount, category) rows.
    fn transactions(rows: &[(&str, i64, &str)]) -> Dataset {
        Dataset {
            meta: meta(
                "transactions",
                &[
                    ("date", DataType::Date),
                    ("amount", DataType::Money),
                    ("category", DataType::Category),
                ],
            ),
            version: 1,
            columns: vec![
                Column {
                    name: "date".into(),
                    data: ColumnData::Date(rows.iter().map(|r| Some(d(r.0))).collect()),
                },
                Column {
                    name: "amount".into(),
                    data: ColumnData::Int(rows.iter().map(|r| Some(r.1)).collect()),
                },
                Column {
                    name: "category".into(),
                    data: ColumnData::Cat(rows.iter().map(|r| Some(r.2.to_string())).collect()),
                },
            ],
        }
    }

    fn source(sets: Vec<Dataset>) -> BTreeMap<String, Dataset> {
        sets.into_iter().map(|s| (s.meta.name.clone(), s)).collect()
    }

    #[test]
    fn registry_is_consistent() {
        assert_eq!(entries().len(), 17);
        let names: std::collections::BTreeSet<_> = entries().iter().map(|e| e.name).collect();
        assert_eq!(names.len(), entries().len(), "names are unique");
        for e in entries() {
            assert_eq!(entry(e.name), Some(e));
            assert!(!e.inputs.is_empty());
            assert!(e.bounds.lo <= e.bounds.hi);
            let info = CatalogueInfo::from(e);
            assert_eq!(info.inputs.len(), e.inputs.len());
            let json = serde_json::to_string(&info).unwrap();
            let back: CatalogueInfo = serde_json::from_str(&json).unwrap();
            assert_eq!(back, info);
        }
        assert_eq!(
            CatalogueInfo::from(entry(AVG_BALANCE).unwrap()).inputs,
            vec!["transactions.date", "transactions.amount"]
        );
        assert!(entry("credit_score").is_none());
    }

    #[test]
    fn rent_ratio_counts_window_inclusively() {
        let data = source(vec![bills(
            "rent",
            &[
                ("2025-01-01", Some("2024-12-30")), // before the window
                ("2025-02-01", Some("2025-02-01")), // first day of the window, on time
                ("2025-03-01", Some("2025-03-02")), // late
                ("2025-04-01", None),               // unpaid
                ("2025-05-01", Some("2025-04-28")), // on time
                ("2026-01-31", Some("2026-01-31")), // last day of the window, on time
                ("2026-02-01", Some("2026-02-01")), // after the window
            ],
        )]);
        let v = compute(RENT_ON_TIME, d("2026-01-31"), &data).unwrap();
        assert_eq!(v, Value::Float(3.0 / 5.0));
        // No rows in the window.
        let v = compute(RENT_ON_TIME, d("2020-12-31"), &data).unwrap();
        assert_eq!(v, Value::Null);
        // Missing dataset.
        assert_eq!(
            compute(UTILITY_ON_TIME, d("2026-01-31"), &data),
            Err(EvalError::MissingDataset("utilities".into()))
        );
    }

    #[test]
    fn utility_ratio_includes_every_kind() {
        let data = source(vec![bills(
            "utilities",
            &[
                ("2025-11-10", Some("2025-11-09")),
                ("2025-11-15", Some("2025-11-20")),
                ("2025-12-10", Some("2025-12-10")),
                ("2025-12-15", Some("2025-12-01")),
            ],
        )]);
        let v = compute(UTILITY_ON_TIME, d("2025-12-31"), &data).unwrap();
        assert_eq!(v, Value::Float(0.75));
    }

    #[test]
    fn streak_stops_at_first_failing_month() {
        let data = source(vec![bills(
            "rent",
            &[
                ("2025-01-01", Some("2024-12-31")),
                ("2025-02-01", Some("2025-02-05")), // late: the streak cannot pass this month
                ("2025-03-01", Some("2025-03-01")),
                ("2025-04-01", Some("2025-03-30")),
                ("2025-05-01", Some("2025-05-01")),
                ("2025-06-01", None), // after the window end used below
            ],
        )]);
        assert_eq!(
            compute(RENT_STREAK, d("2025-05-31"), &data).unwrap(),
            Value::Int(3)
        );
        // The latest month unpaid: streak 0.
        assert_eq!(
            compute(RENT_STREAK, d("2025-06-30"), &data).unwrap(),
            Value::Int(0)
        );
        // A month with no rent row ends the streak.
        assert_eq!(
            compute(RENT_STREAK, d("2025-07-31"), &data).unwrap(),
            Value::Int(0)
        );
        // A late month (February) stops it even though January was fine.
        assert_eq!(
            compute(RENT_STREAK, d("2025-02-28"), &data).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            compute(RENT_STREAK, d("2025-01-31"), &data).unwrap(),
            Value::Int(1)
        );
    }

    #[test]
    fn streak_with_two_rows_in_a_month_needs_both() {
        let data = source(vec![bills(
            "rent",
            &[
                ("2025-04-01", Some("2025-04-01")),
                ("2025-05-01", Some("2025-05-01")),
                ("2025-05-15", Some("2025-05-20")),
            ],
        )]);
        assert_eq!(
            compute(RENT_STREAK, d("2025-05-31"), &data).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            compute(RENT_STREAK, d("2025-04-30"), &data).unwrap(),
            Value::Int(1)
        );
    }

    #[test]
    fn streak_is_capped() {
        let mut rows = Vec::new();
        let mut due = d("2010-01-01");
        let mut strings = Vec::new();
        while due <= d("2025-12-01") {
            strings.push(due.format("%Y-%m-%d").to_string());
            due = due.checked_add_months(chrono::Months::new(1)).unwrap();
        }
        for s in &strings {
            rows.push((s.as_str(), Some(s.as_str())));
        }
        let data = source(vec![bills("rent", &rows)]);
        assert_eq!(
            compute(RENT_STREAK, d("2025-12-31"), &data).unwrap(),
            Value::Int(120)
        );
    }

    #[test]
    fn nsf_window_excludes_its_start_and_includes_its_end() {
        // window_end 2025-06-30; 90 days before is 2025-04-01 (excluded).
        let data = source(vec![transactions(&[
            ("2025-04-01", -3500, "nsf_fee"),
            ("2025-04-02", -3500, "overdraft_fee"),
            ("2025-05-10", -3500, "nsf_fee"),
            ("2025-05-11", -2000, "groceries"),
            ("2025-06-30", -3500, "overdraft_fee"),
            ("2025-07-01", -3500, "nsf_fee"),
        ])]);
        assert_eq!(
            compute(NSF_COUNT, d("2025-06-30"), &data).unwrap(),
            Value::Int(3)
        );
    }

    #[test]
    fn nsf_count_is_clamped() {
        let rows: Vec<(&str, i64, &str)> =
            (0..150).map(|_| ("2025-06-15", -3500, "nsf_fee")).collect();
        let data = source(vec![transactions(&rows)]);
        assert_eq!(
            compute(NSF_COUNT, d("2025-06-30"), &data).unwrap(),
            Value::Int(100)
        );
    }

    #[test]
    fn income_cv_counts_empty_months_as_zero() {
        // Window 2025-01 .. 2025-12. Ten months of 100000, one of 200000 (two paydays), one with none.
        let mut rows = vec![
            ("2024-12-31", 999_999, "income"), // before the window
            ("2025-03-15", -50_000, "rent"),   // not income
        ];
        let days = [
            "2025-01-15",
            "2025-02-15",
            "2025-03-15",
            "2025-04-15",
            "2025-05-15",
            "2025-06-15",
            "2025-07-15",
            "2025-08-15",
            "2025-09-15",
            "2025-10-15",
        ];
        for day in days {
            rows.push((day, 100_000, "income"));
        }
        rows.push(("2025-11-01", 100_000, "income"));
        rows.push(("2025-11-30", 100_000, "income"));
        // December: no income.
        rows.push(("2026-01-01", 999_999, "income")); // after the window
        let data = source(vec![transactions(&rows)]);
        // Totals: ten x 1e5, one 2e5, one 0. Mean 1e5. Squared deviations: 1e10 (Nov) + 1e10 (Dec).
        // Variance 2e10 / 12; std = sqrt(2e10/12); cv = std / 1e5 = sqrt(1/6).
        let v = compute(INCOME_CV, d("2025-12-31"), &data).unwrap();
        let Value::Float(cv) = v else {
            panic!("expected a float, got {v:?}")
        };
        assert!((cv - (1.0f64 / 6.0).sqrt()).abs() < 1e-12, "cv = {cv}");
        // No income at all in a window: null.
        assert_eq!(
            compute(INCOME_CV, d("2023-12-31"), &data).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn income_cv_steady_is_zero() {
        let rows: Vec<(String, i64, &str)> = (1..=12)
            .map(|m| (format!("2025-{m:02}-01"), 250_000, "income"))
            .collect();
        let rows: Vec<(&str, i64, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
        let data = source(vec![transactions(&rows)]);
        assert_eq!(
            compute(INCOME_CV, d("2025-12-31"), &data).unwrap(),
            Value::Float(0.0)
        );
    }

    #[test]
    fn avg_daily_balance_by_hand() {
        // Window: 2025-01-01 .. 2025-03-31 = 31 + 28 + 31 = 90 days.
        let data = source(vec![transactions(&[
            ("2024-12-01", 100_000, "opening_balance"), // before the window: opening 100000
            ("2024-12-20", -40_000, "rent"),            // opening 60000
            ("2025-01-01", 30_000, "income"),           // day 1 onward: 90000
            ("2025-02-01", -100_000, "rent"),           // Feb onward: -10000
            ("2025-03-31", 45_001, "income"),           // last day: 35001
            ("2025-04-01", 1_000_000, "income"),        // after the window
        ])]);
        // Jan: 31 days x 90000 = 2790000; Feb 1..Mar 30: (28 + 30) x -10000 = -580000; Mar 31: 35001.
        // Total 2245001 over 90 days = 24944.4555... -> 24944.
        assert_eq!(
            compute(AVG_BALANCE, d("2025-03-31"), &data).unwrap(),
            Value::Int(24944)
        );
    }

    #[test]
    fn avg_daily_balance_rounds_half_away_from_zero_and_clamps() {
        // Window 2025-01-01..2025-03-31: 90 days. An amount on the last day counts for one day only, so
        // the average is amount / 90: 45 / 90 = 0.5 -> 1, -45 / 90 -> -1, 44 / 90 -> 0.
        for (amount, want) in [(45, 1), (-45, -1), (44, 0), (-44, 0), (135, 2)] {
            let data = source(vec![transactions(&[("2025-03-31", amount, "income")])]);
            assert_eq!(
                compute(AVG_BALANCE, d("2025-03-31"), &data).unwrap(),
                Value::Int(want),
                "amount {amount}"
            );
        }
        // Huge balances clamp to the upper bound; hugely negative to the lower bound.
        let data = source(vec![transactions(&[("2025-01-01", 900_000_000, "income")])]);
        assert_eq!(
            compute(AVG_BALANCE, d("2025-06-30"), &data).unwrap(),
            Value::Int(10_000_000)
        );
        let data = source(vec![transactions(&[("2025-01-01", -900_000_000, "cash")])]);
        assert_eq!(
            compute(AVG_BALANCE, d("2025-06-30"), &data).unwrap(),
            Value::Int(-1_000_000)
        );
    }

    #[test]
    fn round_div_rounds_halves_away_from_zero() {
        assert_eq!(round_div(5, 2), 3);
        assert_eq!(round_div(-5, 2), -3);
        assert_eq!(round_div(4, 3), 1);
        assert_eq!(round_div(-4, 3), -1);
        assert_eq!(round_div(5, 3), 2);
        assert_eq!(round_div(-5, 3), -2);
        assert_eq!(round_div(0, 7), 0);
    }

    #[test]
    fn wrong_column_types_are_errors_not_panics() {
        let mut t = transactions(&[("2025-01-01", 1, "income")]);
        t.columns[1].data = ColumnData::Float(vec![Some(1.0)]);
        let data = source(vec![t]);
        assert!(matches!(
            compute(AVG_BALANCE, d("2025-03-31"), &data),
            Err(EvalError::Other(_))
        ));
        let mut t = transactions(&[("2025-01-01", 1, "income")]);
        t.columns.remove(2);
        let data = source(vec![t]);
        assert_eq!(
            compute(NSF_COUNT, d("2025-03-31"), &data),
            Err(EvalError::MissingColumn {
                dataset: "transactions".into(),
                column: "category".into()
            })
        );
    }

    /// The sample data of `profile` (seed 5, 24 months to October 2026), loaded as the node loads it.
    fn sample_data(profile: crate::sample::Profile) -> BTreeMap<String, Dataset> {
        use crate::ingest::{load_csv, parse_meta, IngestLimits};
        let cfg = crate::sample::SampleConfig::new(5, profile, (2026, 10));
        crate::sample::generate(&cfg)
            .into_iter()
            .map(|f| {
                let meta = parse_meta(&f.meta_toml).unwrap();
                let (ds, _) = load_csv(f.csv.as_bytes(), &meta, &IngestLimits::default()).unwrap();
                (f.name, ds)
            })
            .collect()
    }

    /// Every new attribute against values computed by hand from the sample's CSV files (`duo sample --seed 5
    /// --end-month 2026-10`, both profiles), with a separate script over the files: windows ending at the last
    /// month and at June 2025, when the struggling profile had overdrawn days.
    #[test]
    fn new_attributes_match_hand_computed_values_on_both_samples() {
        use crate::sample::Profile;
        let int = |v: i64| Value::Int(v);
        let ratio = |num: i64, den: i64| Value::Float(num as f64 / den as f64);
        /// A profile, a window end and the eleven attributes' values.
        type Case = (Profile, &'static str, [(&'static str, Value); 11]);
        let cases: [Case; 4] = [
            (
                Profile::Reliable,
                "2026-10-31",
                [
                    (UTILITY_LATE_30, int(0)),
                    (SUBSCRIPTION_PAID, ratio(13, 13)),
                    (AVG_BALANCE_12M, int(416_680)),
                    (NEGATIVE_DAYS, int(0)),
                    (INFLOW, int(1_152_342)),
                    (OUTFLOW, int(1_013_970)),
                    (NET_FLOW, int(138_372)),
                    (INCOME_MONTHS, int(12)),
                    (RENT_TO_INCOME, ratio(1_683_000, 4_993_482)),
                    (ACCOUNT_AGE, int(24)),
                    (LIQUIDITY, ratio(40_410_248, 1_166_970)),
                ],
            ),
            (
                Profile::Struggling,
                "2026-10-31",
                [
                    (UTILITY_LATE_30, int(3)),
                    (SUBSCRIPTION_PAID, ratio(18, 20)),
                    (AVG_BALANCE_12M, int(120_219)),
                    (NEGATIVE_DAYS, int(0)),
                    (INFLOW, int(1_170_551)),
                    (OUTFLOW, int(1_149_701)),
                    (NET_FLOW, int(20_850)),
                    (INCOME_MONTHS, int(12)),
                    (RENT_TO_INCOME, ratio(1_530_000, 4_254_716)),
                    (ACCOUNT_AGE, int(24)),
                    (LIQUIDITY, ratio(13_623_622, 1_178_150)),
                ],
            ),
            (
                Profile::Reliable,
                "2025-06-30",
                [
                    (UTILITY_LATE_30, int(0)),
                    (SUBSCRIPTION_PAID, ratio(8, 8)),
                    (AVG_BALANCE_12M, int(259_344)),
                    (NEGATIVE_DAYS, int(0)),
                    (INFLOW, int(1_152_342)),
                    (OUTFLOW, int(1_151_837)),
                    (NET_FLOW, int(505)),
                    // The data starts in November 2024: 8 of the 12 months.
                    (INCOME_MONTHS, int(8)),
                    (RENT_TO_INCOME, ratio(1_160_000, 3_264_969)),
                    (ACCOUNT_AGE, int(8)),
                    (LIQUIDITY, ratio(38_622_488, 1_296_837)),
                ],
            ),
            (
                Profile::Struggling,
                "2025-06-30",
                [
                    (UTILITY_LATE_30, int(3)),
                    (SUBSCRIPTION_PAID, ratio(2, 2)),
                    (AVG_BALANCE_12M, int(39_302)),
                    (NEGATIVE_DAYS, int(17)),
                    (INFLOW, int(829_330)),
                    (OUTFLOW, int(792_333)),
                    (NET_FLOW, int(36_997)),
                    (INCOME_MONTHS, int(8)),
                    (RENT_TO_INCOME, ratio(1_160_000, 2_460_918)),
                    (ACCOUNT_AGE, int(8)),
                    (LIQUIDITY, ratio(3_017_619, 792_333)),
                ],
            ),
        ];
        for (profile, end, want) in cases {
            let data = sample_data(profile);
            for (name, value) in want {
                assert_eq!(
                    compute(name, d(end), &data).unwrap(),
                    value,
                    "{name}, {profile}, window ending {end}"
                );
            }
        }
    }

    /// Without binding clamps, the DP forms' values give the plaintext attributes: a sum, or a ratio of sums.
    #[test]
    fn dp_values_reproduce_the_attributes_on_both_samples() {
        for profile in crate::sample::Profile::ALL {
            let data = sample_data(profile);
            for end in ["2026-10-31", "2025-06-30", "2025-12-31"] {
                for e in entries() {
                    let Some(form) = dp_form(e.name) else {
                        continue;
                    };
                    let sums: Vec<i128> = (0..form.parts.len())
                        .map(|p| total(&dp_values(e.name, p, d(end), &data).unwrap()))
                        .collect();
                    let from_form = match (form.combine, sums.as_slice()) {
                        (DpCombine::Sum, [s]) => Value::Int(saturate(*s)),
                        (DpCombine::Ratio, [_, den]) if *den < 1 => Value::Null,
                        (DpCombine::Ratio, [num, den]) => Value::Float(*num as f64 / *den as f64),
                        other => panic!("{}: {other:?}", e.name),
                    };
                    assert_eq!(
                        clamp_to(from_form, e.bounds),
                        compute(e.name, d(end), &data).unwrap(),
                        "{}, {profile}, {end}",
                        e.name
                    );
                }
            }
        }
    }

    /// Every attribute has a dp form, a lineage or a stated reason it has none; forms read one dataset that the
    /// attribute reads; a part a unit can move one value of is bounded below by 0 (so replacing that value moves
    /// the sum by at most its upper bound, the sensitivity OpenDP's sum gives one row).
    #[test]
    fn every_attribute_has_a_dp_form_or_a_reason() {
        let metas: BTreeMap<String, crate::meta::DatasetMeta> =
            sample_data(crate::sample::Profile::Reliable)
                .into_iter()
                .map(|(n, d)| (n, d.meta))
                .collect();
        for e in entries() {
            match (dp_form(e.name), dp_lineage(e.name, d("2026-10-31"), &metas)) {
                (Some(form), Err(why)) => {
                    assert!(why.contains("noisy sums"), "{why}");
                    assert!(
                        e.inputs.iter().all(|(ds, _)| *ds == form.dataset),
                        "{}",
                        e.name
                    );
                    for p in &form.parts {
                        assert!(p.lo <= p.hi);
                        if p.reach == DpReach::OneValue {
                            assert_eq!(p.lo, 0, "{}", e.name);
                        }
                    }
                }
                (None, Ok(_)) => {}
                (None, Err(why)) => assert!(
                    why.contains("unsuited") || why.contains("noisy sum"),
                    "{}: {why}",
                    e.name
                ),
                (Some(_), Ok(_)) => panic!("{} has two dp forms", e.name),
            }
        }
    }

    #[test]
    fn late_bills_count_only_past_30_days_within_the_window() {
        // Window 2025-01-01 .. 2025-12-31.
        let data = source(vec![bills(
            "utilities",
            &[
                ("2024-12-15", None),               // due before the window
                ("2025-01-10", Some("2025-02-09")), // 30 days late: not more than 30
                ("2025-01-10", Some("2025-02-10")), // 31 days late
                ("2025-03-01", None),               // never paid
                ("2025-06-01", Some("2025-05-30")), // on time
                ("2025-11-30", None),               // unpaid, but only 31 days at the end: counts
                ("2025-12-01", None),               // unpaid 30 days at the end: not yet
                ("2025-12-15", Some("2026-02-01")), // paid late after the window, due too recently
            ],
        )]);
        assert_eq!(
            compute(UTILITY_LATE_30, d("2025-12-31"), &data).unwrap(),
            Value::Int(3)
        );
    }

    #[test]
    fn cash_flow_by_hand() {
        // 90 days ending 2025-03-31 start 2025-01-01.
        let data = source(vec![transactions(&[
            ("2024-12-01", 500_000, "opening_balance"),
            ("2024-12-31", 70_000, "income"), // before the window
            ("2025-01-01", 200_000, "income"),
            ("2025-01-02", -150_000, "rent"),
            ("2025-01-20", -800_000, "transfer"), // balance 620000 -> -180000 until 2025-02-10
            ("2025-02-10", 190_000, "income"),    // back to 10000
            ("2025-03-31", -2_500, "subscription"),
        ])]);
        let end = d("2025-03-31");
        assert_eq!(compute(INFLOW, end, &data).unwrap(), Value::Int(390_000));
        assert_eq!(compute(OUTFLOW, end, &data).unwrap(), Value::Int(952_500));
        assert_eq!(compute(NET_FLOW, end, &data).unwrap(), Value::Int(-562_500));
        // Below zero from 2025-01-20 through 2025-02-09: 21 days.
        assert_eq!(compute(NEGATIVE_DAYS, end, &data).unwrap(), Value::Int(21));
        // Of the 12 months April 2024 .. March 2025, income arrived in December, January and February.
        assert_eq!(compute(INCOME_MONTHS, end, &data).unwrap(), Value::Int(3));
        // Rent 150000 over income 70000 + 200000 + 190000.
        assert_eq!(
            compute(RENT_TO_INCOME, end, &data).unwrap(),
            Value::Float(150_000.0 / 460_000.0)
        );
        // First transaction December 2024: December to March is 4 months.
        assert_eq!(compute(ACCOUNT_AGE, end, &data).unwrap(), Value::Int(4));
        assert_eq!(
            compute(ACCOUNT_AGE, d("2024-11-30"), &data).unwrap(),
            Value::Int(0)
        );
        // No income: no ratio.
        let none = source(vec![transactions(&[("2025-01-02", -150_000, "rent")])]);
        assert_eq!(compute(RENT_TO_INCOME, end, &none).unwrap(), Value::Null);
    }

    #[test]
    fn subscription_consistency_by_hand() {
        let subs = Dataset {
            meta: meta(
                "subscriptions",
                &[
                    ("charge_date", DataType::Date),
                    ("status", DataType::Category),
                ],
            ),
            version: 1,
            columns: vec![
                Column {
                    name: "charge_date".into(),
                    data: ColumnData::Date(
                        [
                            "2024-12-31",
                            "2025-01-05",
                            "2025-02-05",
                            "2025-03-05",
                            "2025-12-31",
                        ]
                        .iter()
                        .map(|s| Some(d(s)))
                        .collect(),
                    ),
                },
                Column {
                    name: "status".into(),
                    data: ColumnData::Cat(
                        ["declined", "paid", "declined", "paid", "paid"]
                            .iter()
                            .map(|s| Some(s.to_string()))
                            .collect(),
                    ),
                },
            ],
        };
        let data = source(vec![subs]);
        assert_eq!(
            compute(SUBSCRIPTION_PAID, d("2025-12-31"), &data).unwrap(),
            Value::Float(0.75)
        );
        assert_eq!(
            compute(SUBSCRIPTION_PAID, d("2024-11-30"), &data).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn every_attribute_has_a_plain_reason() {
        for e in entries() {
            let r = e.reason();
            assert!(!r.contains(e.name), "{}: {r}", e.name);
            assert!(r.len() < 80, "{}: {r}", e.name);
        }
        assert_eq!(
            entry("rent_on_time_ratio_12m").unwrap().reason(),
            "rent paid late in the last 12 months"
        );
        let mut other = *entry("income_cv_12m").unwrap();
        other.name = "not_in_the_table";
        assert_eq!(other.reason(), "the value of not_in_the_table");
    }
}
