//! Seeded, realistic sample data for one made-up person: rent, utilities, subscriptions and bank transactions.
//!
//! [`generate`] returns the four datasets of the sample schema as CSV text with metadata TOML that
//! [`crate::ingest::parse_meta`] accepts. The output is a pure function of the [`SampleConfig`]: the same seed
//! gives the same bytes. Two profiles tell different credit stories:
//!
//! - [`Profile::Reliable`]: a salaried person paid biweekly, who pays rent and bills on time (often a little
//!   early), keeps a cushion in the bank and almost never overdraws;
//! - [`Profile::Struggling`]: a gig worker with irregular income, who pays rent late more often and sometimes
//!   not at all, has bills returned unpaid or paid more than a month late, subscription cards declined, and
//!   overdraft and NSF fees when the balance dips below zero.
//!
//! The generator simulates the bank balance day by day, so fees, declines and returned payments follow from
//! the money actually in the account.

use crate::ingest::money_to_string;
use chrono::{Datelike, Days, NaiveDate};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Which credit story the sample tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Steady salary, on-time payments, a cushion in the bank.
    Reliable,
    /// Irregular gig income, late and missed payments, overdrafts.
    Struggling,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 2] = [Profile::Reliable, Profile::Struggling];

    /// The profile's name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Profile::Reliable => "reliable",
            Profile::Struggling => "struggling",
        }
    }

    /// One line describing the profile.
    pub fn describe(self) -> &'static str {
        match self {
            Profile::Reliable => {
                "steady biweekly salary, rent and bills paid on time, a cushion in the bank"
            }
            Profile::Struggling => {
                "irregular gig income, late and occasionally missed rent, overdraft and NSF fees"
            }
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A profile name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sample profile {0:?}; use \"reliable\" or \"struggling\"")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Profile::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownProfile(s.to_string()))
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleConfig {
    /// Seed of the random generator; the output is a function of the whole configuration.
    pub seed: u64,
    /// The credit story.
    pub profile: Profile,
    /// The last full month covered, as (year, month 1-12).
    pub end_month: (i32, u32),
    /// Number of months covered, ending with `end_month` (default 24; clamped to 1..=600).
    pub months: u32,
}

/// Months covered by default.
pub const DEFAULT_MONTHS: u32 = 24;

/// Most months [`generate`] covers; longer requests are shortened.
pub const MAX_MONTHS: u32 = 600;

impl SampleConfig {
    /// A configuration covering [`DEFAULT_MONTHS`] months up to `end_month`.
    pub fn new(seed: u64, profile: Profile, end_month: (i32, u32)) -> Self {
        SampleConfig {
            seed,
            profile,
            end_month,
            months: DEFAULT_MONTHS,
        }
    }

    /// The months covered, first to last (after clamping the configuration to sane values).
    fn month_range(&self) -> (Month, u32) {
        let (year, month) = self.end_month;
        let end = Month::new(year.clamp(1900, 9999), month.clamp(1, 12));
        let months = self.months.clamp(1, MAX_MONTHS);
        (Month(end.0 - (months as i32 - 1)), months)
    }

    /// The covered window: the first day of the first month to the last day of `end_month`.
    pub fn window(&self) -> (NaiveDate, NaiveDate) {
        let (first, months) = self.month_range();
        (first.first(), Month(first.0 + months as i32 - 1).last())
    }
}

/// One generated dataset: CSV text and its metadata TOML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleFile {
    /// Dataset name (`rent`, `utilities`, `subscriptions` or `transactions`).
    pub name: String,
    /// The rows, header first.
    pub csv: String,
    /// The metadata, accepted by [`crate::ingest::parse_meta`].
    pub meta_toml: String,
}

/// The last full calendar month before `today`, as (year, month).
pub fn last_full_month(today: NaiveDate) -> (i32, u32) {
    if today.month() == 1 {
        (today.year() - 1, 12)
    } else {
        (today.year(), today.month() - 1)
    }
}

/// Writes `NAME.csv` and `NAME.meta.toml` for each file into `dir` (created if missing); returns the paths
/// written, CSV then metadata for each file.
pub fn write_dir(dir: &Path, files: &[SampleFile]) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut paths = Vec::with_capacity(files.len() * 2);
    for f in files {
        let csv = dir.join(format!("{}.csv", f.name));
        std::fs::write(&csv, &f.csv)?;
        paths.push(csv);
        let meta = dir.join(format!("{}.meta.toml", f.name));
        std::fs::write(&meta, &f.meta_toml)?;
        paths.push(meta);
    }
    Ok(paths)
}

// ---------------------------------------------------------------------------------------------------------
// Fixed vocabulary: the public category sets of the sample schema.

/// Utility kinds, in schema order.
pub const UTILITY_KINDS: [&str; 5] = ["electricity", "gas", "water", "internet", "phone"];
/// Subscription services, in schema order.
pub const SERVICES: [&str; 5] = ["netflix", "spotify", "hulu", "gym", "cloud_storage"];
/// Subscription charge statuses.
pub const STATUSES: [&str; 2] = ["paid", "declined"];
/// Transaction categories, in schema order.
pub const TRANSACTION_CATEGORIES: [&str; 15] = [
    "opening_balance",
    "income",
    "rent",
    "utilities",
    "phone",
    "subscription",
    "groceries",
    "dining",
    "transport",
    "shopping",
    "health",
    "cash",
    "transfer",
    "overdraft_fee",
    "nsf_fee",
];

/// Mixed into the seed of the generator's second random stream.
const EXTRA_STREAM: u64 = 0x5EC0_4D57_4EA4_0001;

/// Chance that a late bill of the struggling profile is paid more than 30 days late.
const VERY_LATE: f64 = 0.2;

/// Overdraft and NSF fee, in cents.
pub const FEE_CENTS: i64 = 3500;

/// Most overdraft and NSF fees the sample bank charges in a calendar month.
pub const MAX_FEES_PER_MONTH: u32 = 4;

const BANK: &str = "Harbor Credit Union";
const LANDLORDS: [&str; 4] = [
    "Maple Court Apartments",
    "Riverside Property Management",
    "Oak Street Rentals",
    "Summit Housing LLC",
];
const EMPLOYERS: [&str; 4] = [
    "Northwind Logistics",
    "Contoso Health",
    "Fabrikam Manufacturing",
    "Lakeside School District",
];
const GIG_SOURCES: [&str; 3] = ["RideShare Payouts", "DeliverNow", "TaskHub"];
const PART_TIME: &str = "Corner Cafe Payroll";
/// Providers per utility kind, in [`UTILITY_KINDS`] order.
const PROVIDERS: [[&str; 2]; 5] = [
    ["Metro Power", "Bright Electric"],
    ["City Gas Co", "Valley Natural Gas"],
    ["Municipal Water", "Clearwater Utility"],
    ["FiberLink", "CableNet"],
    ["Talkwell Mobile", "Signal Wireless"],
];
/// Merchant names per service, in [`SERVICES`] order.
const SERVICE_MERCHANTS: [&str; 5] = [
    "Netflix",
    "Spotify",
    "Hulu",
    "FitLife Gym",
    "CloudBox Storage",
];
/// Monthly prices per service in cents, in [`SERVICES`] order.
const SERVICE_PRICES: [&[i64]; 5] = [
    &[699, 1549, 2299],
    &[1199, 1699],
    &[799, 1799],
    &[2499, 3499, 4999],
    &[299, 999],
];
const GROCERS: [&str; 3] = ["FreshMart", "Green Valley Grocers", "SaveMore Foods"];
const RESTAURANTS: [&str; 4] = [
    "Luigi Pizzeria",
    "Taco Corner",
    "Bean There Coffee",
    "Golden Wok",
];
const FUEL: &str = "QuickFuel";
const TRANSIT: &str = "Metro Transit";
const RIDES: &str = "RideShare Trips";
const SHOPS: [&str; 3] = ["MegaStore", "Online Marketplace", "Thrift Corner"];
const HEALTH: [&str; 2] = ["CareWell Pharmacy", "Community Clinic"];
const ATM: &str = "ATM Withdrawal";
const SAVINGS: &str = "Savings Account";
const FAMILY: &str = "Family Support";

/// Every counterparty the generator can write, the public category set of `transactions.counterparty`.
pub fn counterparties() -> Vec<&'static str> {
    let mut all = vec![BANK];
    all.extend(LANDLORDS);
    all.extend(EMPLOYERS);
    all.extend(GIG_SOURCES);
    all.push(PART_TIME);
    all.extend(PROVIDERS.iter().flatten());
    all.extend(SERVICE_MERCHANTS);
    all.extend(GROCERS);
    all.extend(RESTAURANTS);
    all.extend([FUEL, TRANSIT, RIDES]);
    all.extend(SHOPS);
    all.extend(HEALTH);
    all.extend([ATM, SAVINGS, FAMILY]);
    all
}

/// Every utility provider the generator can write, the public category set of `utilities.provider`.
pub fn providers() -> Vec<&'static str> {
    PROVIDERS.iter().flatten().copied().collect()
}

// ---------------------------------------------------------------------------------------------------------
// Calendar

/// A calendar month as `year * 12 + (month - 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Month(i32);

impl Month {
    fn new(year: i32, month: u32) -> Self {
        Month(year * 12 + month as i32 - 1)
    }

    fn year(self) -> i32 {
        self.0.div_euclid(12)
    }

    /// 1-12.
    fn number(self) -> u32 {
        self.0.rem_euclid(12) as u32 + 1
    }

    fn first(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year(), self.number(), 1).unwrap_or_default()
    }

    fn last(self) -> NaiveDate {
        Month(self.0 + 1).first().pred_opt().unwrap_or_default()
    }

    fn days(self) -> u32 {
        self.last().day()
    }

    /// Day `d` of the month, clamped to the month's length.
    fn day(self, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year(), self.number(), d.clamp(1, self.days()))
            .unwrap_or_default()
    }
}

/// `d` moved by `n` days (unchanged if that leaves the calendar).
fn shift(d: NaiveDate, n: i64) -> NaiveDate {
    let moved = if n >= 0 {
        d.checked_add_days(Days::new(n.unsigned_abs()))
    } else {
        d.checked_sub_days(Days::new(n.unsigned_abs()))
    };
    moved.unwrap_or(d)
}

fn date_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn opt_date_text(d: Option<NaiveDate>) -> String {
    d.map(date_text).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------------
// Random helpers

fn pick<T: Copy + Default>(rng: &mut ChaCha20Rng, xs: &[T]) -> T {
    let i = rng.random_range(0..xs.len().max(1));
    xs.get(i).copied().unwrap_or_default()
}

/// `cents` times a factor drawn from `lo..hi`, rounded to cents.
fn vary(rng: &mut ChaCha20Rng, cents: f64, lo: f64, hi: f64) -> i64 {
    (cents * rng.random_range(lo..hi)).round() as i64
}

/// Dollars drawn from `lo..hi`, as cents.
fn dollars(rng: &mut ChaCha20Rng, lo: f64, hi: f64) -> i64 {
    (rng.random_range(lo..hi) * 100.0).round() as i64
}

// ---------------------------------------------------------------------------------------------------------
// Rows

struct RentRow {
    due: NaiveDate,
    paid: Option<NaiveDate>,
    amount: i64,
}

struct UtilityRow {
    kind: usize,
    provider: &'static str,
    due: NaiveDate,
    paid: Option<NaiveDate>,
    amount: i64,
}

struct SubscriptionRow {
    service: usize,
    date: NaiveDate,
    amount: i64,
    paid: bool,
}

struct Tx {
    date: NaiveDate,
    amount: i64,
    category: &'static str,
    counterparty: &'static str,
}

/// Something that moves money, scheduled on a day.
enum Event {
    Income {
        amount: i64,
        from: &'static str,
    },
    FamilyHelp {
        amount: i64,
    },
    Rent {
        row: usize,
    },
    Utility {
        row: usize,
        retry: bool,
    },
    Subscription {
        row: usize,
    },
    Spend {
        category: &'static str,
        to: &'static str,
        amount: i64,
        essential: bool,
    },
    Save,
}

impl Event {
    /// Order within a day: money in first, then rent, bills, subscriptions, spending, savings.
    fn rank(&self) -> u8 {
        match self {
            Event::Income { .. } | Event::FamilyHelp { .. } => 0,
            Event::Rent { .. } => 1,
            Event::Utility { .. } => 2,
            Event::Subscription { .. } => 3,
            Event::Spend { .. } => 4,
            Event::Save => 5,
        }
    }
}

/// Seasonal factor per calendar month (percent) for electricity, gas and water.
const ELECTRIC_SEASON: [i64; 12] = [105, 95, 85, 80, 90, 120, 145, 150, 120, 90, 90, 105];
const GAS_SEASON: [i64; 12] = [190, 170, 130, 90, 60, 40, 35, 35, 45, 80, 130, 180];
const WATER_SEASON: [i64; 12] = [90, 90, 95, 100, 110, 120, 125, 125, 110, 100, 95, 90];

fn season(table: &[i64; 12], m: Month) -> f64 {
    table.get(m.number() as usize - 1).copied().unwrap_or(100) as f64 / 100.0
}

/// The whole simulation: a person, their schedule and their bank account.
struct Sim {
    rng: ChaCha20Rng,
    /// A second stream, for choices added after the first: drawing from it leaves every draw of `rng`, and so
    /// the rest of the sample, as it was.
    extra: ChaCha20Rng,
    profile: Profile,
    first: Month,
    months: u32,
    start: NaiveDate,
    end: NaiveDate,
    rent: Vec<RentRow>,
    utilities: Vec<UtilityRow>,
    subscriptions: Vec<SubscriptionRow>,
    txs: Vec<Tx>,
    queue: BTreeMap<(NaiveDate, u8, u64), Event>,
    seq: u64,
    balance: i64,
    last_fee: Option<NaiveDate>,
    /// Fees charged in a month (the bank caps them at [`MAX_FEES_PER_MONTH`]).
    fees: (Month, u32),
    last_help: Option<Month>,
    /// Balance the reliable profile keeps before moving money to savings.
    cushion: i64,
    landlord: &'static str,
    /// The struggling profile is waiting for money to pay rent (and cuts spending meanwhile).
    rent_overdue: bool,
}

impl Sim {
    fn new(cfg: &SampleConfig) -> Self {
        let (first, months) = cfg.month_range();
        let (start, end) = cfg.window();
        Sim {
            rng: ChaCha20Rng::seed_from_u64(cfg.seed),
            extra: ChaCha20Rng::seed_from_u64(cfg.seed ^ EXTRA_STREAM),
            profile: cfg.profile,
            first,
            months,
            start,
            end,
            rent: Vec::new(),
            utilities: Vec::new(),
            subscriptions: Vec::new(),
            txs: Vec::new(),
            queue: BTreeMap::new(),
            seq: 0,
            balance: 0,
            last_fee: None,
            fees: (first, 0),
            last_help: None,
            cushion: 0,
            landlord: "",
            rent_overdue: false,
        }
    }

    fn reliable(&self) -> bool {
        self.profile == Profile::Reliable
    }

    fn month(&self, i: u32) -> Month {
        Month(self.first.0 + i as i32)
    }

    fn schedule(&mut self, date: NaiveDate, event: Event) {
        if date < self.start || date > self.end {
            return;
        }
        self.seq += 1;
        self.queue.insert((date, event.rank(), self.seq), event);
    }

    fn in_window(&self, d: NaiveDate) -> Option<NaiveDate> {
        (d <= self.end).then_some(d.max(self.start))
    }

    /// Rent rows and their payments. Returns the base rent in cents.
    fn plan_rent(&mut self) -> i64 {
        self.landlord = pick(&mut self.rng, &LANDLORDS);
        let landlord_rent = self.rng.random_range(44..=72) * 2500;
        let increase = (self.months > 12 && self.rng.random_bool(0.5)).then(|| {
            let raise = landlord_rent as f64 * self.rng.random_range(0.02..0.06);
            (12, landlord_rent + ((raise / 500.0).round() as i64) * 500)
        });
        let missed: Vec<u32> = if self.reliable() || self.months < 6 {
            Vec::new()
        } else {
            let n = self.rng.random_range(1..=2);
            let mut candidates: Vec<u32> = (1..self.months).collect();
            candidates.shuffle(&mut self.rng);
            candidates.into_iter().take(n).collect()
        };
        for i in 0..self.months {
            let m = self.month(i);
            let due = m.first();
            let amount = match increase {
                Some((from, raised)) if i >= from => raised,
                _ => landlord_rent,
            };
            let offset: Option<i64> = if missed.contains(&i) {
                None
            } else if self.reliable() {
                if self.rng.random_bool(0.03) {
                    Some(self.rng.random_range(1..=4))
                } else if i > 0 && self.rng.random_bool(0.4) {
                    Some(-self.rng.random_range(1..=3))
                } else {
                    Some(0)
                }
            } else if self.rng.random_bool(0.15) {
                Some(self.rng.random_range(2..=12))
            } else {
                Some(0)
            };
            let paid = offset.and_then(|o| self.in_window(shift(due, o)));
            self.rent.push(RentRow { due, paid, amount });
            if let Some(p) = paid {
                let row = self.rent.len() - 1;
                self.schedule(p, Event::Rent { row });
            }
        }
        landlord_rent
    }

    /// Utility and phone bills. Returns the average monthly total in cents.
    fn plan_utilities(&mut self) -> i64 {
        let has = [
            true,
            self.rng.random_bool(0.75),
            self.rng.random_bool(0.7),
            true,
            true,
        ];
        let mut base = [0i64; 5];
        let mut due_day = [1u32; 5];
        let mut provider = [""; 5];
        for k in 0..UTILITY_KINDS.len() {
            let b = match k {
                0 => dollars(&mut self.rng, 55.0, 110.0),
                1 => dollars(&mut self.rng, 30.0, 60.0),
                2 => dollars(&mut self.rng, 30.0, 55.0),
                3 => pick(&mut self.rng, &[4999, 5999, 6499, 7499, 7999]),
                _ => pick(&mut self.rng, &[4000, 4500, 5500, 6500, 7500, 8500, 9000]),
            };
            if let Some(slot) = base.get_mut(k) {
                *slot = b;
            }
            if let Some(slot) = due_day.get_mut(k) {
                *slot = self.rng.random_range(3..=25);
            }
            if let (Some(slot), Some(names)) = (provider.get_mut(k), PROVIDERS.get(k)) {
                *slot = pick(&mut self.rng, names);
            }
        }
        // An internet promotion that ends once.
        let internet_raise = self.rng.random_bool(0.4).then(|| {
            (
                self.rng.random_range(0..self.months),
                dollars(&mut self.rng, 5.0, 15.0),
            )
        });
        let mut total = 0i64;
        for i in 0..self.months {
            let m = self.month(i);
            for k in 0..UTILITY_KINDS.len() {
                if !has.get(k).copied().unwrap_or(false) {
                    continue;
                }
                let b = base.get(k).copied().unwrap_or(0) as f64;
                let amount = match k {
                    0 => vary(&mut self.rng, b * season(&ELECTRIC_SEASON, m), 0.9, 1.1),
                    1 => vary(&mut self.rng, b * season(&GAS_SEASON, m), 0.9, 1.1),
                    2 => vary(&mut self.rng, b * season(&WATER_SEASON, m), 0.92, 1.08),
                    3 => match internet_raise {
                        Some((from, raise)) if i >= from => b as i64 + raise,
                        _ => b as i64,
                    },
                    _ => b as i64,
                };
                total += amount;
                let due = m.day(due_day.get(k).copied().unwrap_or(15));
                let offset: Option<i64> = if self.reliable() {
                    if self.rng.random_bool(0.02) {
                        Some(self.rng.random_range(1..=5))
                    } else {
                        Some(-self.rng.random_range(0..=2))
                    }
                } else {
                    let u: f64 = self.rng.random();
                    if u < 0.03 {
                        None
                    } else if u < 0.28 {
                        let days = self.rng.random_range(2..=20);
                        // Now and then a late bill waits past the next one: more than 30 days late.
                        if self.extra.random_bool(VERY_LATE) {
                            Some(self.extra.random_range(31..=45))
                        } else {
                            Some(days)
                        }
                    } else {
                        Some(-self.rng.random_range(0..=1))
                    }
                };
                let paid = offset.and_then(|o| self.in_window(shift(due, o)));
                self.utilities.push(UtilityRow {
                    kind: k,
                    provider: provider.get(k).copied().unwrap_or_default(),
                    due,
                    paid,
                    amount,
                });
                if let Some(p) = paid {
                    let row = self.utilities.len() - 1;
                    self.schedule(p, Event::Utility { row, retry: false });
                }
            }
        }
        total / i64::from(self.months.max(1))
    }

    /// Subscription charges. Returns the monthly total of the first month's prices in cents.
    fn plan_subscriptions(&mut self) -> i64 {
        let count = self.rng.random_range(2..=4);
        let mut services: Vec<usize> = (0..SERVICES.len()).collect();
        services.shuffle(&mut self.rng);
        services.truncate(count);
        services.sort_unstable();
        // One subscription runs to the end of the window, so every window has charges.
        let kept = self.extra.random_range(0..count);
        let mut monthly = 0;
        for (n, s) in services.into_iter().enumerate() {
            let mut price = pick(
                &mut self.rng,
                SERVICE_PRICES.get(s).copied().unwrap_or(&[999]),
            );
            monthly += price;
            let day = self.rng.random_range(1..=28);
            let begin = if self.months > 1 && self.rng.random_bool(0.3) {
                self.rng.random_range(1..self.months)
            } else {
                0
            };
            let stop = if begin + 1 < self.months && self.rng.random_bool(0.2) {
                self.rng.random_range(begin + 1..self.months)
            } else {
                self.months
            };
            let stop = if n == kept { self.months } else { stop };
            let raise_at = self.rng.random_bool(0.3).then(|| {
                (
                    self.rng.random_range(0..self.months),
                    self.rng.random_range(100..=300),
                )
            });
            for i in begin..stop {
                if let Some((at, raise)) = raise_at {
                    if i == at {
                        price += raise;
                    }
                }
                let date = self.month(i).day(day);
                self.subscriptions.push(SubscriptionRow {
                    service: s,
                    date,
                    amount: price,
                    paid: false,
                });
                let row = self.subscriptions.len() - 1;
                self.schedule(date, Event::Subscription { row });
            }
        }
        monthly
    }

    /// Paydays. Returns the expected monthly net income in cents.
    fn plan_income(&mut self, rent: i64) -> i64 {
        if self.reliable() {
            let employer = pick(&mut self.rng, &EMPLOYERS);
            let monthly = rent as f64 / self.rng.random_range(0.28..0.36);
            let mut pay = vary(&mut self.rng, monthly * 12.0 / 26.0, 0.995, 1.005);
            let raise = (self.months > 6 && self.rng.random_bool(0.6)).then(|| {
                let i = self.rng.random_range(6..self.months);
                let at = self.month(i).first();
                (at, self.rng.random_range(1.02..1.05))
            });
            // Biweekly Fridays.
            let wd = self.start.weekday().num_days_from_monday() as i64;
            let mut day = shift(
                self.start,
                (4 - wd).rem_euclid(7) + 7 * self.rng.random_range(0..=1),
            );
            let mut raised = false;
            while day <= self.end {
                if let Some((at, factor)) = raise {
                    if !raised && day >= at {
                        pay = (pay as f64 * factor).round() as i64;
                        raised = true;
                    }
                }
                self.schedule(
                    day,
                    Event::Income {
                        amount: pay,
                        from: employer,
                    },
                );
                day = shift(day, 14);
            }
            monthly.round() as i64
        } else {
            let monthly = rent as f64 / self.rng.random_range(0.38..0.48);
            let mut sources: Vec<(&'static str, f64, i64)> = Vec::new(); // (name, share, period days)
            let gig = pick(&mut self.rng, &GIG_SOURCES);
            if self.rng.random_bool(0.5) {
                sources.push((PART_TIME, 0.45, 14));
                sources.push((gig, 0.55, 7));
            } else {
                let other = GIG_SOURCES
                    .iter()
                    .copied()
                    .find(|g| *g != gig)
                    .unwrap_or(gig);
                sources.push((gig, 0.65, 7));
                sources.push((other, 0.35, 7));
            }
            // A month-by-month swing shared by every source: busy and slow months.
            let swing: Vec<f64> = (0..self.months)
                .map(|_| self.rng.random_range(0.75..1.25))
                .collect();
            for (name, share, period) in sources {
                // Payouts are skipped one time in eight; the rest make up for it on average.
                let per_payout = monthly * share * period as f64 * 12.0 / 365.0 / 0.88;
                let mut day = shift(self.start, self.rng.random_range(0..period));
                while day <= self.end {
                    let month_index = (Month::new(day.year(), day.month()).0 - self.first.0).max(0);
                    let f = swing.get(month_index as usize).copied().unwrap_or(1.0);
                    if !self.rng.random_bool(0.12) {
                        let amount = vary(&mut self.rng, per_payout * f, 0.35, 1.65).max(500);
                        self.schedule(day, Event::Income { amount, from: name });
                    }
                    day = shift(day, period);
                }
            }
            monthly.round() as i64
        }
    }

    /// Everyday spending, and the reliable profile's monthly move to savings.
    fn plan_spending(&mut self, budget: i64) {
        let transit = self.rng.random_bool(0.3);
        let budget = budget as f64;
        // (category, share of budget, fewest and most purchases a month, essential)
        let plan: [(&'static str, f64, u32, u32, bool); 6] = [
            ("groceries", 0.36, 4, 9, true),
            ("dining", 0.14, 2, 8, false),
            ("transport", 0.18, 3, 7, true),
            ("shopping", 0.14, 1, 4, false),
            ("health", 0.06, 0, 2, true),
            ("cash", 0.12, 0, 3, false),
        ];
        for i in 0..self.months {
            let m = self.month(i);
            for (category, share, lo, hi, essential) in plan {
                let n = self.rng.random_range(lo..=hi);
                let each = budget * share / f64::from((lo + hi).max(1)) * 2.0;
                for _ in 0..n {
                    let date = m.day(self.rng.random_range(1..=m.days()));
                    let (to, amount) = match category {
                        "groceries" => (
                            pick(&mut self.rng, &GROCERS),
                            vary(&mut self.rng, each, 0.5, 1.5),
                        ),
                        "dining" => (
                            pick(&mut self.rng, &RESTAURANTS),
                            vary(&mut self.rng, each, 0.4, 1.6),
                        ),
                        "transport" => {
                            let to = if self.rng.random_bool(0.15) {
                                RIDES
                            } else if transit {
                                TRANSIT
                            } else {
                                FUEL
                            };
                            (to, vary(&mut self.rng, each, 0.6, 1.4))
                        }
                        "shopping" => (
                            pick(&mut self.rng, &SHOPS),
                            vary(&mut self.rng, each, 0.3, 1.7),
                        ),
                        "health" => (
                            pick(&mut self.rng, &HEALTH),
                            vary(&mut self.rng, each, 0.5, 1.5),
                        ),
                        _ => (
                            ATM,
                            (vary(&mut self.rng, each, 0.5, 1.5) / 2000).max(1) * 2000,
                        ),
                    };
                    self.schedule(
                        date,
                        Event::Spend {
                            category,
                            to,
                            amount: amount.max(100),
                            essential,
                        },
                    );
                }
            }
            let day = if self.reliable() {
                20
            } else {
                self.rng.random_range(22..=28)
            };
            self.schedule(m.day(day), Event::Save);
        }
    }

    fn push_tx(
        &mut self,
        date: NaiveDate,
        amount: i64,
        category: &'static str,
        counterparty: &'static str,
    ) {
        self.balance = self.balance.saturating_add(amount);
        self.txs.push(Tx {
            date,
            amount,
            category,
            counterparty,
        });
    }

    /// Whether the bank may charge another fee this month, counting it if so.
    fn take_fee(&mut self, date: NaiveDate) -> bool {
        let m = Month::new(date.year(), date.month());
        if self.fees.0 != m {
            self.fees = (m, 0);
        }
        if self.fees.1 >= MAX_FEES_PER_MONTH {
            return false;
        }
        self.fees.1 += 1;
        true
    }

    /// A debit; an overdraft fee (at most one a day) if it takes the balance below zero.
    fn debit(&mut self, date: NaiveDate, amount: i64, category: &'static str, to: &'static str) {
        self.push_tx(date, -amount, category, to);
        if self.balance < 0 && self.last_fee != Some(date) && self.take_fee(date) {
            self.last_fee = Some(date);
            self.push_tx(date, -FEE_CENTS, "overdraft_fee", BANK);
            self.maybe_family_help(date);
        }
    }

    /// After a fee, family sometimes sends money (the struggling profile; at most once a month).
    fn maybe_family_help(&mut self, date: NaiveDate) {
        let m = Month::new(date.year(), date.month());
        if self.reliable() || self.last_help == Some(m) || !self.rng.random_bool(0.35) {
            return;
        }
        self.last_help = Some(m);
        let mut amount = self.rng.random_range(10..=40) * 1000;
        if self.balance < -40_000 {
            // Deep in the red: family covers the hole.
            amount += (-self.balance / 1000) * 1000;
        }
        let when = shift(date, self.rng.random_range(1..=3));
        self.schedule(when, Event::FamilyHelp { amount });
    }

    fn run(&mut self) {
        let opening = if self.reliable() {
            dollars(&mut self.rng, 2500.0, 6000.0)
        } else {
            dollars(&mut self.rng, 300.0, 1200.0)
        };
        self.push_tx(self.start, opening, "opening_balance", BANK);
        while let Some(((date, _, _), event)) = self.queue.pop_first() {
            match event {
                Event::Income { amount, from } => self.push_tx(date, amount, "income", from),
                Event::FamilyHelp { amount } => self.push_tx(date, amount, "transfer", FAMILY),
                Event::Rent { row } => self.pay_rent(date, row),
                Event::Utility { row, retry } => self.pay_utility(date, row, retry),
                Event::Subscription { row } => {
                    let Some(sub) = self.subscriptions.get(row) else {
                        continue;
                    };
                    let (amount, service) = (sub.amount, sub.service);
                    // Cards are declined rather than overdrawn.
                    if self.balance >= amount {
                        if let Some(sub) = self.subscriptions.get_mut(row) {
                            sub.paid = true;
                        }
                        let merchant = SERVICE_MERCHANTS.get(service).copied().unwrap_or_default();
                        self.debit(date, amount, "subscription", merchant);
                    }
                }
                Event::Spend {
                    category,
                    to,
                    amount,
                    essential,
                } => self.spend(date, category, to, amount, essential),
                Event::Save => self.move_surplus(date),
            }
        }
    }

    /// Money above the cushion leaves the account: to savings (reliable), or sent to family and spent
    /// (struggling, whose cushion is small, so a slow month soon takes the balance below zero).
    fn move_surplus(&mut self, date: NaiveDate) {
        let excess = self.balance - self.cushion;
        if excess <= 10_000 {
            return;
        }
        if self.reliable() {
            let amount = (excess.min(300_000) / 5000) * 5000;
            self.debit(date, amount, "transfer", SAVINGS);
        } else {
            let amount = vary(&mut self.rng, excess as f64, 0.5, 0.9) / 1000 * 1000;
            if amount > 0 {
                self.debit(date, amount, "transfer", FAMILY);
            }
        }
    }

    fn pay_rent(&mut self, date: NaiveDate, row: usize) {
        let Some(r) = self.rent.get(row) else {
            return;
        };
        let (amount, last_chance) = (r.amount, shift(r.due, 15));
        self.rent_overdue = false;
        if !self.reliable() && self.balance < amount * 17 / 20 && date < last_chance {
            self.rent_overdue = true;
            // Not enough in the account: wait for the next payout, up to two weeks late.
            let later = shift(date, self.rng.random_range(2..=5)).min(last_chance);
            let later = (later <= self.end).then_some(later);
            if let Some(r) = self.rent.get_mut(row) {
                r.paid = later;
            }
            if let Some(d) = later {
                self.schedule(d, Event::Rent { row });
            }
            return;
        }
        self.debit(date, amount, "rent", self.landlord);
    }

    fn pay_utility(&mut self, date: NaiveDate, row: usize, retry: bool) {
        let Some(bill) = self.utilities.get(row) else {
            return;
        };
        let (amount, kind, provider) = (bill.amount, bill.kind, bill.provider);
        let category = if kind == 4 { "phone" } else { "utilities" };
        if !self.reliable() && !retry && self.balance < amount && self.take_fee(date) {
            // The automatic payment is returned unpaid: an NSF fee, and a second try a few days later.
            self.push_tx(date, -FEE_CENTS, "nsf_fee", BANK);
            let again = shift(date, self.rng.random_range(3..=7));
            let paid = (again <= self.end).then_some(again);
            if let Some(bill) = self.utilities.get_mut(row) {
                bill.paid = paid;
            }
            if let Some(d) = paid {
                self.schedule(d, Event::Utility { row, retry: true });
            }
            return;
        }
        self.debit(date, amount, category, provider);
    }

    fn spend(
        &mut self,
        date: NaiveDate,
        category: &'static str,
        to: &'static str,
        amount: i64,
        essential: bool,
    ) {
        let after = self.balance - amount;
        let go = if category == "cash" {
            // ATMs do not overdraw.
            after >= 0
        } else if self.reliable() {
            essential || after >= 50_000
        } else if self.rent_overdue && !essential {
            false
        } else if after >= 0 {
            true
        } else if essential {
            self.rng.random_bool(0.4)
        } else {
            self.rng.random_bool(0.1)
        };
        if go {
            self.debit(date, amount, category, to);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Output

/// Generates the sample: `rent`, `utilities`, `subscriptions` and `transactions`, in that order.
pub fn generate(cfg: &SampleConfig) -> Vec<SampleFile> {
    let mut sim = Sim::new(cfg);
    let rent = sim.plan_rent();
    let utilities = sim.plan_utilities();
    let subscriptions = sim.plan_subscriptions();
    let income = sim.plan_income(rent);
    let fixed = rent + utilities + subscriptions;
    let left = (income - fixed).max(0) as f64;
    let budget = if sim.reliable() {
        left * sim.rng.random_range(0.55..0.7)
    } else {
        (left * sim.rng.random_range(0.85..1.0)).max(30_000.0)
    };
    let budget = budget.round() as i64;
    sim.cushion = if sim.reliable() {
        fixed + budget + 50_000
    } else {
        // Tries to keep next month's rent, and often falls short.
        vary(&mut sim.rng, rent as f64, 1.05, 1.3)
    };
    sim.plan_spending(budget);
    sim.run();
    vec![
        rent_file(cfg, &sim),
        utilities_file(cfg, &sim),
        subscriptions_file(cfg, &sim),
        transactions_file(cfg, &sim),
    ]
}

/// One declared column of a sample dataset.
struct Spec {
    name: &'static str,
    dtype: &'static str,
    description: &'static str,
    bounds: Option<(i64, i64)>,
    categories: Option<Vec<&'static str>>,
    nullable: bool,
}

impl Spec {
    fn new(name: &'static str, dtype: &'static str, description: &'static str) -> Self {
        Spec {
            name,
            dtype,
            description,
            bounds: None,
            categories: None,
            nullable: false,
        }
    }

    fn bounds(mut self, lo: i64, hi: i64) -> Self {
        self.bounds = Some((lo, hi));
        self
    }

    fn categories(mut self, set: Vec<&'static str>) -> Self {
        self.categories = Some(set);
        self
    }

    fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct DatasetSpec {
    name: &'static str,
    description: &'static str,
    tags: [&'static str; 2],
    time_column: &'static str,
    max_rows: u64,
    columns: Vec<Spec>,
}

fn meta_toml(cfg: &SampleConfig, d: &DatasetSpec) -> String {
    let (start, end) = cfg.window();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Sample data made up by Duo (seed {}, profile \"{}\"): {}.",
        cfg.seed,
        cfg.profile.name(),
        cfg.profile.describe()
    );
    let _ = writeln!(t, "# Everything below is what an FI may see about this dataset; the rows stay with the owner.");
    let _ = writeln!(t, "name = {}", toml_str(d.name));
    let _ = writeln!(t, "description = {}", toml_str(d.description));
    let tags: Vec<String> = d
        .tags
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| toml_str(t))
        .collect();
    let _ = writeln!(t, "tags = [{}]", tags.join(", "));
    let _ = writeln!(t, "privacy_unit = \"event\"");
    let _ = writeln!(t, "time_column = {}", toml_str(d.time_column));
    let _ = writeln!(
        t,
        "window = {{ start = \"{}\", end = \"{}\" }}",
        date_text(start),
        date_text(end)
    );
    let _ = writeln!(t, "max_rows = {}", d.max_rows);
    for c in &d.columns {
        let _ = writeln!(t, "\n[[columns]]");
        let _ = writeln!(t, "name = {}", toml_str(c.name));
        let _ = writeln!(t, "type = {}", toml_str(c.dtype));
        let _ = writeln!(t, "description = {}", toml_str(c.description));
        if c.dtype == "money" {
            let _ = writeln!(t, "unit = \"USD cents\"");
        }
        if let Some((lo, hi)) = c.bounds {
            let _ = writeln!(t, "bounds = [{lo}, {hi}]");
        }
        if let Some(set) = &c.categories {
            let items: Vec<String> = set.iter().map(|s| toml_str(s)).collect();
            let _ = writeln!(t, "categories = [{}]", items.join(", "));
        }
        if c.nullable {
            let _ = writeln!(t, "nullable = true");
        }
    }
    t
}

fn rows_cap(months: u32, per_month: u64) -> u64 {
    u64::from(months) * per_month * 10
}

fn rent_file(cfg: &SampleConfig, sim: &Sim) -> SampleFile {
    let mut csv = String::from("due_date,paid_date,amount\n");
    for r in &sim.rent {
        let _ = writeln!(
            csv,
            "{},{},{}",
            date_text(r.due),
            opt_date_text(r.paid),
            money_to_string(r.amount)
        );
    }
    let spec = DatasetSpec {
        name: "rent",
        description: "Monthly rent: the amount due on the 1st of each month and the date it was paid (empty if it has not been paid).",
        tags: ["housing", "payments"],
        time_column: "due_date",
        max_rows: rows_cap(sim.months, 1),
        columns: vec![
            Spec::new("due_date", "date", "The day the month's rent was due (the 1st)."),
            Spec::new(
                "paid_date",
                "date",
                "The day the rent was paid; empty if it was not paid. Paid on time means paid_date <= due_date.",
            )
            .nullable(),
            Spec::new("amount", "money", "The rent due for the month.").bounds(0, 1_000_000),
        ],
    };
    SampleFile {
        name: "rent".into(),
        csv,
        meta_toml: meta_toml(cfg, &spec),
    }
}

fn utilities_file(cfg: &SampleConfig, sim: &Sim) -> SampleFile {
    let mut rows: Vec<&UtilityRow> = sim.utilities.iter().collect();
    rows.sort_by_key(|r| (r.due, r.kind));
    let mut csv = String::from("kind,provider,due_date,paid_date,amount\n");
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{}",
            UTILITY_KINDS.get(r.kind).copied().unwrap_or_default(),
            r.provider,
            date_text(r.due),
            opt_date_text(r.paid),
            money_to_string(r.amount)
        );
    }
    let spec = DatasetSpec {
        name: "utilities",
        description: "Utility and phone bills: one bill per service per month, with the provider, the due date, the date it was paid (empty if it has not been paid) and the amount.",
        tags: ["utilities", "payments"],
        time_column: "due_date",
        max_rows: rows_cap(sim.months, 5),
        columns: vec![
            Spec::new("kind", "category", "The service billed.").categories(UTILITY_KINDS.to_vec()),
            Spec::new("provider", "category", "The company that sent the bill.").categories(providers()),
            Spec::new("due_date", "date", "The day the bill was due."),
            Spec::new(
                "paid_date",
                "date",
                "The day the bill was paid; empty if it was not paid. Paid on time means paid_date <= due_date.",
            )
            .nullable(),
            Spec::new("amount", "money", "The amount billed.").bounds(0, 100_000),
        ],
    };
    SampleFile {
        name: "utilities".into(),
        csv,
        meta_toml: meta_toml(cfg, &spec),
    }
}

fn subscriptions_file(cfg: &SampleConfig, sim: &Sim) -> SampleFile {
    let mut rows: Vec<&SubscriptionRow> = sim.subscriptions.iter().collect();
    rows.sort_by_key(|r| (r.date, r.service));
    let mut csv = String::from("service,charge_date,amount,status\n");
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{},{}",
            SERVICES.get(r.service).copied().unwrap_or_default(),
            date_text(r.date),
            money_to_string(r.amount),
            if r.paid { "paid" } else { "declined" }
        );
    }
    let spec = DatasetSpec {
        name: "subscriptions",
        description: "Recurring subscription charges (streaming, music, gym, cloud storage) and whether each charge went through or was declined.",
        tags: ["subscriptions", "payments"],
        time_column: "charge_date",
        max_rows: rows_cap(sim.months, 5),
        columns: vec![
            Spec::new("service", "category", "The subscription charged.").categories(SERVICES.to_vec()),
            Spec::new("charge_date", "date", "The day the card was charged."),
            Spec::new("amount", "money", "The amount charged.").bounds(0, 10_000),
            Spec::new("status", "category", "Whether the charge was paid or declined.").categories(STATUSES.to_vec()),
        ],
    };
    SampleFile {
        name: "subscriptions".into(),
        csv,
        meta_toml: meta_toml(cfg, &spec),
    }
}

fn transactions_file(cfg: &SampleConfig, sim: &Sim) -> SampleFile {
    let mut csv = String::from("date,amount,category,counterparty\n");
    for t in &sim.txs {
        let _ = writeln!(
            csv,
            "{},{},{},{}",
            date_text(t.date),
            money_to_string(t.amount),
            t.category,
            t.counterparty
        );
    }
    let spec = DatasetSpec {
        name: "transactions",
        description: "Bank account transactions in dollars and cents: credits are positive, debits negative. The first row is the opening balance on the first day of the window, so the balance on a day is the sum of all amounts up to and including that day.",
        tags: ["bank", ""],
        time_column: "date",
        max_rows: rows_cap(sim.months, 60),
        columns: vec![
            Spec::new("date", "date", "The day the transaction posted."),
            Spec::new("amount", "money", "The amount: positive for money in, negative for money out.")
                .bounds(-1_000_000, 1_000_000),
            Spec::new("category", "category", "What the transaction was for.")
                .categories(TRANSACTION_CATEGORIES.to_vec()),
            Spec::new("counterparty", "category", "Who paid or was paid.").categories(counterparties()),
        ],
    };
    SampleFile {
        name: "transactions".into(),
        csv,
        meta_toml: meta_toml(cfg, &spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{ColumnData, Dataset};
    use crate::ingest::{load_csv, parse_meta, IngestLimits};

    const END: (i32, u32) = (2026, 10);

    fn cfg(seed: u64, profile: Profile) -> SampleConfig {
        SampleConfig::new(seed, profile, END)
    }

    fn load_all(files: &[SampleFile]) -> Vec<Dataset> {
        files
            .iter()
            .map(|f| {
                let meta = parse_meta(&f.meta_toml)
                    .unwrap_or_else(|e| panic!("{} metadata: {e}\n{}", f.name, f.meta_toml));
                let (ds, _) = load_csv(f.csv.as_bytes(), &meta, &IngestLimits::default())
                    .unwrap_or_else(|e| panic!("{} rows: {e}", f.name));
                ds
            })
            .collect()
    }

    fn dates(ds: &Dataset, col: &str) -> Vec<Option<NaiveDate>> {
        match ds.column(col).map(|c| &c.data) {
            Some(ColumnData::Date(v)) => v.clone(),
            _ => panic!("no date column {col}"),
        }
    }

    fn ints(ds: &Dataset, col: &str) -> Vec<i64> {
        match ds.column(col).map(|c| &c.data) {
            Some(ColumnData::Int(v)) => v.iter().map(|x| x.unwrap_or(i64::MIN)).collect(),
            _ => panic!("no money column {col}"),
        }
    }

    fn cats(ds: &Dataset, col: &str) -> Vec<String> {
        match ds.column(col).map(|c| &c.data) {
            Some(ColumnData::Cat(v)) => v.iter().map(|x| x.clone().unwrap_or_default()).collect(),
            _ => panic!("no category column {col}"),
        }
    }

    /// (late or missed rent months, fee transactions) for one sample.
    fn stress(files: &[SampleFile]) -> (usize, usize) {
        let all = load_all(files);
        let (rent, tx) = (&all[0], &all[3]);
        let late = dates(rent, "due_date")
            .iter()
            .zip(dates(rent, "paid_date"))
            .filter(|(due, paid)| paid.is_none_or(|p| Some(p) > **due))
            .count();
        let fees = cats(tx, "category")
            .iter()
            .filter(|c| *c == "overdraft_fee" || *c == "nsf_fee")
            .count();
        (late, fees)
    }

    #[test]
    fn same_seed_same_bytes_different_seed_different_bytes() {
        for profile in Profile::ALL {
            let a = generate(&cfg(7, profile));
            let b = generate(&cfg(7, profile));
            assert_eq!(a, b);
            let c = generate(&cfg(8, profile));
            assert_ne!(a, c);
            for (x, y) in a.iter().zip(&c) {
                assert_ne!(x.csv, y.csv, "{} is the same for seeds 7 and 8", x.name);
            }
        }
        assert_ne!(
            generate(&cfg(7, Profile::Reliable)),
            generate(&cfg(7, Profile::Struggling))
        );
    }

    #[test]
    fn every_file_loads_with_its_metadata() {
        for profile in Profile::ALL {
            for seed in [0, 1, 2, 3, 42, 1234, u64::MAX] {
                let files = generate(&cfg(seed, profile));
                let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
                assert_eq!(
                    names,
                    ["rent", "utilities", "subscriptions", "transactions"]
                );
                let all = load_all(&files);
                for ds in &all {
                    assert!(ds.rows() as u64 <= ds.meta.max_rows);
                    assert!(ds.rows() > 0, "{} is empty", ds.meta.name);
                }
            }
        }
    }

    #[test]
    fn window_and_row_counts_are_right() {
        for (profile, months, end) in [
            (Profile::Reliable, 24, (2026, 10)),
            (Profile::Struggling, 24, (2025, 1)),
            (Profile::Struggling, 13, (2024, 2)),
            (Profile::Reliable, 1, (2025, 12)),
        ] {
            let c = SampleConfig {
                months,
                ..SampleConfig::new(5, profile, end)
            };
            let (start, last) = c.window();
            assert_eq!(start.day(), 1);
            assert_eq!(last.succ_opt().map(|d| d.day()), Some(1));
            assert_eq!((last.year(), last.month()), end);
            let all = load_all(&generate(&c));
            for ds in &all {
                let w = ds.meta.window.unwrap_or_else(|| panic!("no window"));
                assert_eq!((w.start, w.end), (start, last));
                let time = ds.meta.time_column.clone().unwrap_or_default();
                for d in dates(ds, &time).into_iter().flatten() {
                    assert!(
                        d >= start && d <= last,
                        "{} {d} outside the window",
                        ds.meta.name
                    );
                }
            }
            assert_eq!(all[0].rows(), months as usize);
            let due = dates(&all[0], "due_date");
            assert!(due.iter().flatten().all(|d| d.day() == 1));
            let kinds = cats(&all[1], "kind");
            for kind in ["electricity", "internet", "phone"] {
                assert_eq!(kinds.iter().filter(|k| *k == kind).count(), months as usize);
            }
        }
        let c = SampleConfig::new(1, Profile::Reliable, (2026, 10));
        assert_eq!(
            c.window(),
            (
                NaiveDate::from_ymd_opt(2024, 11, 1).unwrap_or_default(),
                NaiveDate::from_ymd_opt(2026, 10, 31).unwrap_or_default()
            )
        );
    }

    #[test]
    fn transactions_open_with_the_balance_and_are_sorted() {
        for profile in Profile::ALL {
            for seed in [3, 4] {
                let c = cfg(seed, profile);
                let all = load_all(&generate(&c));
                let tx = &all[3];
                let category = cats(tx, "category");
                let date: Vec<NaiveDate> = dates(tx, "date").into_iter().flatten().collect();
                assert_eq!(
                    category.first().map(String::as_str),
                    Some("opening_balance")
                );
                assert_eq!(
                    category.iter().filter(|c| *c == "opening_balance").count(),
                    1
                );
                assert_eq!(date.first().copied(), Some(c.window().0));
                assert!(date.windows(2).all(|w| w[0] <= w[1]), "not sorted by date");
                assert!(ints(tx, "amount").first().is_some_and(|a| *a > 0));
            }
        }
    }

    #[test]
    fn payments_appear_in_the_bank_account() {
        for profile in Profile::ALL {
            let all = load_all(&generate(&cfg(11, profile)));
            let tx = &all[3];
            let tx_rows: Vec<(Option<NaiveDate>, i64, String)> = dates(tx, "date")
                .into_iter()
                .zip(ints(tx, "amount"))
                .zip(cats(tx, "category"))
                .map(|((d, a), c)| (d, a, c))
                .collect();
            let has = |d: Option<NaiveDate>, amount: i64, cat: &str| {
                tx_rows
                    .iter()
                    .any(|(td, ta, tc)| *td == d && *ta == -amount && tc == cat)
            };
            let rent = &all[0];
            for (paid, amount) in dates(rent, "paid_date")
                .into_iter()
                .zip(ints(rent, "amount"))
            {
                if paid.is_some() {
                    assert!(has(paid, amount, "rent"), "rent paid {paid:?} missing");
                }
            }
            let util = &all[1];
            for ((paid, amount), kind) in dates(util, "paid_date")
                .into_iter()
                .zip(ints(util, "amount"))
                .zip(cats(util, "kind"))
            {
                let cat = if kind == "phone" {
                    "phone"
                } else {
                    "utilities"
                };
                if paid.is_some() {
                    assert!(has(paid, amount, cat), "{kind} paid {paid:?} missing");
                }
            }
            let subs = &all[2];
            let paid_subs = cats(subs, "status").iter().filter(|s| *s == "paid").count();
            let sub_tx = tx_rows.iter().filter(|t| t.2 == "subscription").count();
            assert_eq!(paid_subs, sub_tx);
            // The balance path: opening balance plus every amount.
            let income = tx_rows.iter().filter(|t| t.2 == "income").count();
            assert!(income >= 24, "{income} paydays");
        }
    }

    #[test]
    fn struggling_is_later_and_pays_more_fees_than_reliable() {
        let (mut late_r, mut fees_r, mut late_s, mut fees_s) = (0, 0, 0, 0);
        for seed in 0..6 {
            let (l, f) = stress(&generate(&cfg(seed, Profile::Reliable)));
            late_r += l;
            fees_r += f;
            let (l, f) = stress(&generate(&cfg(seed, Profile::Struggling)));
            late_s += l;
            fees_s += f;
            assert!(l >= 1, "seed {seed}: struggling was never late");
            assert!(f >= 1, "seed {seed}: struggling never paid a fee");
        }
        assert!(
            late_s >= 3 * late_r.max(1),
            "late: struggling {late_s}, reliable {late_r}"
        );
        assert!(
            fees_s >= 5 * fees_r.max(1),
            "fees: struggling {fees_s}, reliable {fees_r}"
        );
        assert!(fees_r <= 2, "reliable paid {fees_r} fees over six samples");
    }

    #[test]
    fn struggling_misses_rent_and_reliable_does_not() {
        for seed in 0..4 {
            let s = load_all(&generate(&cfg(seed, Profile::Struggling)));
            let missed = dates(&s[0], "paid_date")
                .iter()
                .filter(|d| d.is_none())
                .count();
            assert!((1..=2).contains(&missed), "seed {seed}: {missed} missed");
            let r = load_all(&generate(&cfg(seed, Profile::Reliable)));
            assert!(dates(&r[0], "paid_date").iter().all(Option::is_some));
        }
    }

    /// The struggling profile pays some bills more than 30 days late (the reliable one never more than 5); in
    /// both, a subscription is charged in the last month, so every window has subscription charges.
    #[test]
    fn very_late_bills_and_a_subscription_to_the_end() {
        for seed in 0..6 {
            for profile in Profile::ALL {
                let all = load_all(&generate(&cfg(seed, profile)));
                let util = &all[1];
                let most_late = dates(util, "due_date")
                    .into_iter()
                    .zip(dates(util, "paid_date"))
                    .filter_map(|(d, p)| Some((p? - d?).num_days()))
                    .max()
                    .unwrap_or(0);
                match profile {
                    Profile::Reliable => assert!(most_late <= 5, "seed {seed}: {most_late}"),
                    Profile::Struggling => assert!(most_late > 30, "seed {seed}: {most_late}"),
                }
                let last = dates(&all[2], "charge_date").into_iter().flatten().max();
                assert_eq!(
                    last.map(|d| (d.year(), d.month())),
                    Some(END),
                    "seed {seed}, {profile}"
                );
            }
        }
    }

    #[test]
    fn profiles_parse_and_last_full_month() {
        assert_eq!("reliable".parse::<Profile>(), Ok(Profile::Reliable));
        assert_eq!(" Struggling ".parse::<Profile>(), Ok(Profile::Struggling));
        assert!("rich".parse::<Profile>().is_err());
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
        }
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default();
        assert_eq!(last_full_month(d(2026, 11, 15)), (2026, 10));
        assert_eq!(last_full_month(d(2026, 1, 1)), (2025, 12));
        assert_eq!(last_full_month(d(2026, 12, 31)), (2026, 11));
    }

    #[test]
    fn odd_configurations_do_not_panic() {
        for (end, months) in [
            ((2026, 0), 0),
            ((2026, 13), 2),
            ((-5, 6), 700),
            ((i32::MAX, 12), 3),
        ] {
            let c = SampleConfig {
                seed: 1,
                profile: Profile::Struggling,
                end_month: end,
                months,
            };
            let files = generate(&c);
            assert_eq!(files.len(), 4);
            load_all(&files);
        }
    }

    #[test]
    fn write_dir_writes_csv_and_metadata() {
        let dir = std::env::temp_dir().join(format!("duo-sample-test-{}", std::process::id()));
        let files = generate(&SampleConfig {
            months: 3,
            ..cfg(1, Profile::Reliable)
        });
        let paths = write_dir(&dir, &files).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(paths.len(), 8);
        assert!(paths[0].ends_with("rent.csv") && paths[1].ends_with("rent.meta.toml"));
        let text = std::fs::read_to_string(&paths[6]).unwrap_or_default();
        assert_eq!(text, files[3].csv);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
