//! The expression syntax: lineages as text.
//!
//! An FI can build a lineage pointer by pointer, or write it in one go, for example with
//! `duo fi request EXPR`. The text is parsed here into an [`Expr`], which the owner's node then type-checks
//! against the published metadata like any other lineage. The parser checks only the shape of the text:
//! whether `rent` is a dataset or `amount` one of its columns is for the checker to say.
//!
//! # A first look
//!
//! ```text
//! mean(clamp(filter(transactions, category == "rent").amount, -300000, 0))
//! by_month(sum, filter(transactions, category == "income").amount)
//! by_category(sum, clamp(transactions.amount, -500000, 0), category)
//! mean(last_months(rent, 12).paid_date <= last_months(rent, 12).due_date)
//! histogram(filter(transactions, amount < 0 and not category == "transfer").amount, [-100000, -10000, 0])
//! rent_on_time_ratio_12m()
//! rent_on_time_ratio_12m(2026-06-30)
//! count(filter(rent, between(due_date, 2025-11-01, 2026-10-31) and paid_date > due_date))
//! ```
//!
//! Money is in cents, as in the data: `300000` is $3,000.00.
//!
//! # Values
//!
//! | Text                        | Meaning                                                                  |
//! |-----------------------------|--------------------------------------------------------------------------|
//! | `rent`                      | the dataset `rent` (a table)                                             |
//! | `rent.amount`               | its column `amount`; `.name` follows any table: `filter(rent, ...).amount` |
//! | `$7`                        | pointer 7, created earlier in this session                               |
//! | `12`, `-3`                  | an integer                                                               |
//! | `0.5`, `-2.25`, `1e3`       | a decimal (a `.` or an exponent makes a decimal)                         |
//! | `"rent"`                    | a string; escapes `\"`, `\\`, `\n`, `\r`, `\t`, `\u{1F600}`              |
//! | `2026-01-31`                | a date (always `YYYY-MM-DD`; impossible days such as `2026-02-30` are errors) |
//! | `true`, `false`, `null`     | booleans and the missing value                                           |
//!
//! A name is letters, digits and `_`, not starting with a digit. A name that is not of that shape, or is
//! one of the reserved words `true false null and or not`, is written in backticks: `` `my data` ``
//! (escapes `` \` `` and `\\`). A name in backticks is never a keyword or a built-in function.
//!
//! Write spaces around `-` when subtracting: `2026-1-5` with no spaces is read as a (malformed) date.
//!
//! # Operators
//!
//! On columns and scalars, from loosest to tightest:
//!
//! - comparisons `==  !=  <  <=  >  >=` (they do not chain: `a < b < c` is an error);
//! - `+` and `-`, left to right;
//! - `*` and `/`, left to right (`x / 0` gives null);
//! - a `-` sign in front of a number (`-3`, `x * -1`); to negate anything else write `0 - x`;
//! - `.name` after a table, and parentheses.
//!
//! Between two columns, the rows are matched up one to one: `rent.paid_date - rent.due_date` is the delay in
//! days of each payment, and `mean(rent.paid_date <= rent.due_date)` the share of payments made on time.
//!
//! # Functions
//!
//! | Call                          | Result                                                                 |
//! |-------------------------------|------------------------------------------------------------------------|
//! | `filter(TABLE, CONDITION)`    | the rows of `TABLE` where `CONDITION` holds (see below)                |
//! | `select(TABLE, c1, c2, ...)`  | `TABLE` with only the named columns                                    |
//! | `last_months(TABLE, N)`       | the rows of `TABLE` in the last `N` full calendar months (by its time column); short for `filter(TABLE, last_months(N))` |
//! | `clamp(X, LOW, HIGH)`         | each value of `X` moved into `[LOW, HIGH]`                              |
//! | `count(X)`                    | the number of rows of a table, or of non-null values of a column       |
//! | `sum(X)`, `mean(X)`, `variance(X)`, `stdev(X)`, `min(X)`, `max(X)` | the aggregate of a column or a vector (`stdev` the population standard deviation) |
//! | `median(X)`, `quantile(X, Q)` | the `Q`-quantile of a column, `0 <= Q <= 1` (the median is `Q = 0.5`)   |
//! | `histogram(X, [e0, e1, ...])` | counts of `X` in the bins `e0 <= x < e1`, ... (the last bin includes its upper edge) |
//! | `by_month(AGG, X)`            | `AGG` (one of `count sum mean variance stdev min max`) per calendar month: a vector |
//! | `by_category(AGG, X, COLUMN)` | `AGG` per category of `COLUMN`, a category column of `X`'s table, over its declared categories (one entry each, in the declared order, none left out for lack of rows): a vector |
//! | `dot(X, [w1, w2, ...])`       | the weighted sum of a vector                                           |
//! | `NAME()`, `NAME(2026-06-30)`  | the catalogue attribute `NAME` over the window ending at the last full month, or on the given day |
//!
//! `LOW`, `HIGH`, `Q`, `N`, bin edges and weights are numbers written in place (a list holds at most
//! 4096 of them). Any name followed by `(` that is not one of the functions above is a catalogue attribute.
//!
//! # Conditions
//!
//! The second argument of `filter` is a condition on one row. In it, bare names are the columns of the
//! filtered table (write `amount`, not `rent.amount`).
//!
//! | Condition                              | Holds when                                                    |
//! |----------------------------------------|---------------------------------------------------------------|
//! | `category == "rent"`, `amount > 10000` | the column compares so with the value (`10000 < amount` also works) |
//! | `paid_date <= due_date`                | the two columns of the row compare so                         |
//! | `between(due_date, 2025-11-01, 2026-10-31)` | the date column is in the range, both ends included     |
//! | `last_months(12)`, `last_months(12, paid_date)` | the table's time column (or the named date column) is in the last 12 full calendar months |
//! | `not C`, `C and D`, `C or D`, `(C)`    | as usual; `not` binds tightest, then `and`, then `or`          |
//!
//! # Limits and errors
//!
//! The text may be at most 16 KiB long and nest at most 64 levels deep (parentheses, calls, conditions and
//! chains of operators all count). Errors carry the byte offset of the problem; [`ParseError::render`]
//! points at it:
//!
//! ```text
//! mean(clamp(rent.amount, 0, 300000)
//!                                   ^ expected `)` to close `mean(`
//! ```
//!
//! [`to_source`] prints any lineage back in this syntax, in a form that parses to an equal [`Expr`].

use crate::expr::{AggKind, ArithOp, CmpOp, Expr, Pred};
use crate::value::Value;
use chrono::NaiveDate;
use std::fmt;

/// Longest accepted source text, in bytes.
pub const MAX_SOURCE_LEN: usize = 16 * 1024;
/// Deepest accepted nesting (of parentheses, calls and conditions, and of the resulting tree).
pub const MAX_DEPTH: usize = 64;
/// Longest accepted list of numbers (histogram edges, dot weights) or of selected columns.
pub const MAX_LIST_LEN: usize = 4096;

/// Words that are not names unless written in backticks.
const RESERVED: [&str; 6] = ["true", "false", "null", "and", "or", "not"];

/// Names that are functions when followed by `(` (anything else followed by `(` is a catalogue attribute).
const BUILTINS: [&str; 18] = [
    "filter",
    "select",
    "clamp",
    "count",
    "sum",
    "mean",
    "variance",
    "stdev",
    "min",
    "max",
    "median",
    "quantile",
    "histogram",
    "by_month",
    "by_category",
    "dot",
    "last_months",
    "batch",
];

/// Why a text is not a valid expression, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the source where the problem was found (the source length at the end of the input).
    pub pos: usize,
    /// What is wrong, in plain words.
    pub message: String,
}

impl ParseError {
    fn new(pos: usize, message: impl Into<String>) -> Self {
        ParseError {
            pos,
            message: message.into(),
        }
    }

    /// The offending line of `src` with a caret under the error position and the message after it:
    ///
    /// ```text
    /// mean(clamp(rent.amount, 0, 300000)
    ///                                   ^ expected `)` to close `mean(`
    /// ```
    ///
    /// For a source of several lines, a first line says which line and column. Never panics, whatever
    /// `pos` is.
    pub fn render(&self, src: &str) -> String {
        let mut pos = self.pos.min(src.len());
        while pos > 0 && !src.is_char_boundary(pos) {
            pos -= 1;
        }
        let before = src.get(..pos).unwrap_or("");
        let after = src.get(pos..).unwrap_or("");
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_end = after.find('\n').map_or(src.len(), |i| pos + i);
        let line = src.get(line_start..line_end).unwrap_or("");
        let line = line.strip_suffix('\r').unwrap_or(line);
        let lead = src.get(line_start..pos).unwrap_or("");
        let pad: String = lead
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let mut out = String::new();
        if src.contains('\n') {
            let line_no = before.matches('\n').count() + 1;
            let col = lead.chars().count() + 1;
            out.push_str(&format!("line {line_no}, column {col}:\n"));
        }
        out.push_str(line);
        out.push('\n');
        out.push_str(&pad);
        out.push_str("^ ");
        out.push_str(&self.message);
        out
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.pos)
    }
}

impl std::error::Error for ParseError {}

type PResult<T> = Result<T, ParseError>;

// ---------------------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A bare name (possibly a reserved word or a function name).
    Ident(String),
    /// A name in backticks: never a keyword or a function.
    QIdent(String),
    /// An unsigned number, as written; `float` when it has a `.` or an exponent.
    Num {
        text: String,
        float: bool,
    },
    Str(String),
    Date(NaiveDate),
    Ptr(u64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Plus,
    Minus,
    Star,
    Slash,
    Cmp(CmpOp),
    Eof,
    /// A lexical error; always the last token.
    Error(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    tok: Tok,
    pos: usize,
}

static EOF_TOKEN: Token = Token {
    tok: Tok::Eof,
    pos: 0,
};

type LexResult = Result<(Tok, usize), (usize, String)>;

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Split the source into tokens. Lexing stops at the first error, which becomes the last token, so that the
/// parser reports problems in source order.
fn lex(src: &str) -> Vec<Token> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let Some(&b) = bytes.get(i) else {
            out.push(Token {
                tok: Tok::Eof,
                pos: i,
            });
            return out;
        };
        let next = bytes.get(i + 1).copied();
        let single = |t: Tok| -> LexResult { Ok((t, i + 1)) };
        let r: LexResult = match b {
            b'(' => single(Tok::LParen),
            b')' => single(Tok::RParen),
            b'[' => single(Tok::LBracket),
            b']' => single(Tok::RBracket),
            b',' => single(Tok::Comma),
            b'.' => single(Tok::Dot),
            b'+' => single(Tok::Plus),
            b'-' => single(Tok::Minus),
            b'*' => single(Tok::Star),
            b'/' => single(Tok::Slash),
            b'=' if next == Some(b'=') => Ok((Tok::Cmp(CmpOp::Eq), i + 2)),
            b'=' => Err((i, "use `==` to compare for equality".into())),
            b'!' if next == Some(b'=') => Ok((Tok::Cmp(CmpOp::Ne), i + 2)),
            b'!' => Err((
                i,
                "`!` must be followed by `=`; to negate a condition write `not`".into(),
            )),
            b'<' if next == Some(b'=') => Ok((Tok::Cmp(CmpOp::Le), i + 2)),
            b'<' => single(Tok::Cmp(CmpOp::Lt)),
            b'>' if next == Some(b'=') => Ok((Tok::Cmp(CmpOp::Ge), i + 2)),
            b'>' => single(Tok::Cmp(CmpOp::Gt)),
            b'"' => lex_quoted(src, i, '"').map(|(s, end)| (Tok::Str(s), end)),
            b'`' => lex_quoted(src, i, '`').map(|(s, end)| (Tok::QIdent(s), end)),
            b'$' => lex_pointer(src, i),
            b'0'..=b'9' => lex_number(src, i),
            b if is_ident_start(b) => {
                let mut end = i;
                while bytes.get(end).copied().is_some_and(is_ident_char) {
                    end += 1;
                }
                Ok((Tok::Ident(src.get(i..end).unwrap_or("").to_string()), end))
            }
            _ => {
                let c = src.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
                Err((i, format!("unexpected character {c:?}")))
            }
        };
        match r {
            Ok((tok, end)) => {
                out.push(Token { tok, pos: i });
                i = end;
            }
            Err((pos, message)) => {
                out.push(Token {
                    tok: Tok::Error(message),
                    pos,
                });
                return out;
            }
        }
    }
}

/// A string (`"..."`) or a quoted name (`` `...` ``) starting at `start`.
fn lex_quoted(src: &str, start: usize, quote: char) -> Result<(String, usize), (usize, String)> {
    let what = if quote == '"' { "string" } else { "name" };
    let unterminated = || {
        (
            start,
            format!("unterminated {what}: missing closing `{quote}`"),
        )
    };
    let body = src.get(start + 1..).ok_or_else(unterminated)?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((j, c)) = chars.next() {
        if c == quote {
            return Ok((out, start + 1 + j + 1));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let esc_pos = start + 1 + j;
        match chars.next() {
            None => return Err(unterminated()),
            Some((_, '"')) => out.push('"'),
            Some((_, '`')) => out.push('`'),
            Some((_, '\\')) => out.push('\\'),
            Some((_, 'n')) => out.push('\n'),
            Some((_, 'r')) => out.push('\r'),
            Some((_, 't')) => out.push('\t'),
            Some((_, 'u')) => {
                let bad = || {
                    (
                        esc_pos,
                        "malformed escape: write `\\u{...}` with 1 to 6 hex digits of a Unicode scalar value"
                            .to_string(),
                    )
                };
                if chars.next().map(|(_, c)| c) != Some('{') {
                    return Err(bad());
                }
                let mut hex = String::new();
                loop {
                    match chars.next() {
                        Some((_, '}')) => break,
                        Some((_, h)) if h.is_ascii_hexdigit() && hex.len() < 6 => hex.push(h),
                        _ => return Err(bad()),
                    }
                }
                let ch = u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(bad)?;
                out.push(ch);
            }
            Some((_, other)) => {
                return Err((
                    esc_pos,
                    format!(
                        "unknown escape `\\{other}` (known: \\\" \\` \\\\ \\n \\r \\t \\u{{...}})"
                    ),
                ))
            }
        }
    }
    Err(unterminated())
}

/// `$` followed by a pointer id.
fn lex_pointer(src: &str, start: usize) -> LexResult {
    let bytes = src.as_bytes();
    let mut end = start + 1;
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    if end == start + 1 {
        return Err((
            start,
            "expected a pointer number after `$` (like `$7`)".into(),
        ));
    }
    if bytes.get(end).copied().is_some_and(is_ident_char) {
        return Err((end, "unexpected character after a pointer number".into()));
    }
    let digits = src.get(start + 1..end).unwrap_or("");
    digits
        .parse::<u64>()
        .map(|id| (Tok::Ptr(id), end))
        .map_err(|_| (start, format!("pointer number `${digits}` is out of range")))
}

/// A number, or a date when the text has the shape `digits-digits-digits` (no spaces).
fn lex_number(src: &str, start: usize) -> LexResult {
    let bytes = src.as_bytes();
    let digits_end = |from: usize| {
        let mut j = from;
        while bytes.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        j
    };
    let is_digit_at = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_digit);

    let int_end = digits_end(start);
    if bytes.get(int_end) == Some(&b'-') && is_digit_at(int_end + 1) {
        let month_end = digits_end(int_end + 1);
        if bytes.get(month_end) == Some(&b'-') && is_digit_at(month_end + 1) {
            let day_end = digits_end(month_end + 1);
            return lex_date(src, start, int_end, month_end, day_end);
        }
    }

    let mut end = int_end;
    let mut float = false;
    if bytes.get(end) == Some(&b'.') && is_digit_at(end + 1) {
        end = digits_end(end + 1);
        float = true;
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let mut j = end + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if !is_digit_at(j) {
            return Err((end, "malformed exponent: expected digits after `e`".into()));
        }
        end = digits_end(j);
        float = true;
    }
    if bytes.get(end).copied().is_some_and(is_ident_char) {
        return Err((end, "unexpected character after a number".into()));
    }
    let text = src.get(start..end).unwrap_or("").to_string();
    Ok((Tok::Num { text, float }, end))
}

fn lex_date(
    src: &str,
    start: usize,
    year_end: usize,
    month_end: usize,
    day_end: usize,
) -> LexResult {
    let text = src.get(start..day_end).unwrap_or("");
    if year_end - start != 4 || month_end - year_end != 3 || day_end - month_end != 3 {
        return Err((
            start,
            format!(
                "`{text}` looks like a date, but dates are written YYYY-MM-DD \
                 (put spaces around `-` to subtract)"
            ),
        ));
    }
    if src
        .as_bytes()
        .get(day_end)
        .copied()
        .is_some_and(is_ident_char)
    {
        return Err((day_end, "unexpected character after a date".into()));
    }
    let field = |a: usize, b: usize| src.get(a..b).and_then(|s| s.parse::<u32>().ok());
    let date = match (
        field(start, year_end),
        field(year_end + 1, month_end),
        field(month_end + 1, day_end),
    ) {
        (Some(y), Some(m), Some(d)) => i32::try_from(y)
            .ok()
            .and_then(|y| NaiveDate::from_ymd_opt(y, m, d)),
        _ => None,
    };
    match date {
        Some(d) => Ok((Tok::Date(d), day_end)),
        None => Err((
            start,
            format!("invalid date `{text}`: there is no such day"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Parser

/// Parse the expression syntax (see the [module documentation](self)) into a lineage.
///
/// ```
/// use duo_engine::parse::parse_expr;
/// use duo_engine::expr::{AggKind, Expr};
///
/// let e = parse_expr("count(rent)").unwrap();
/// assert_eq!(e, Expr::Aggregate {
///     kind: AggKind::Count,
///     input: Box::new(Expr::Dataset { name: "rent".into() }),
/// });
/// let err = parse_expr("mean(rent.amount").unwrap_err();
/// assert_eq!(err.pos, 16);
/// ```
pub fn parse_expr(src: &str) -> Result<Expr, ParseError> {
    if src.len() > MAX_SOURCE_LEN {
        return Err(ParseError::new(
            MAX_SOURCE_LEN,
            format!(
                "expression is too long ({} bytes; the limit is {MAX_SOURCE_LEN})",
                src.len()
            ),
        ));
    }
    let mut p = Parser {
        toks: lex(src),
        i: 0,
        depth: 0,
    };
    if matches!(p.peek(), Tok::Eof) {
        return Err(p.err("expected an expression"));
    }
    let e = p.expr()?;
    if !matches!(p.peek(), Tok::Eof) {
        let found = tok_desc(p.peek());
        return Err(p.err(format!(
            "unexpected {found} after the end of the expression"
        )));
    }
    p.limit_depth(&e, 0)?;
    Ok(e)
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

/// A side of a comparison inside a condition.
enum Operand {
    Column(String),
    Value(Value),
}

impl Parser {
    fn cur(&self) -> &Token {
        self.toks
            .get(self.i)
            .or_else(|| self.toks.last())
            .unwrap_or(&EOF_TOKEN)
    }

    fn peek(&self) -> &Tok {
        &self.cur().tok
    }

    fn peek2(&self) -> &Tok {
        self.toks.get(self.i + 1).map_or(&EOF_TOKEN.tok, |t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.cur().pos
    }

    /// Move to the next token (never past the last one).
    fn bump(&mut self) {
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
    }

    /// An error at the current token; a lexical error there takes precedence.
    fn err(&self, message: impl Into<String>) -> ParseError {
        let t = self.cur();
        match &t.tok {
            Tok::Error(m) => ParseError::new(t.pos, m.clone()),
            _ => ParseError::new(t.pos, message),
        }
    }

    fn enter(&mut self) -> PResult<()> {
        if self.depth >= MAX_DEPTH {
            return Err(ParseError::new(self.pos(), too_deep()));
        }
        self.depth += 1;
        Ok(())
    }

    fn limit_depth(&self, e: &Expr, pos: usize) -> PResult<()> {
        if tree_depth(e) > MAX_DEPTH {
            return Err(ParseError::new(pos, too_deep()));
        }
        Ok(())
    }

    fn limit_pred_depth(&self, p: &Pred, pos: usize) -> PResult<()> {
        if pred_depth(p) > MAX_DEPTH {
            return Err(ParseError::new(pos, too_deep()));
        }
        Ok(())
    }

    // ----- expressions

    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.comparison();
        self.depth -= 1;
        r
    }

    fn comparison(&mut self) -> PResult<Expr> {
        let left = self.additive()?;
        let Tok::Cmp(op) = *self.peek() else {
            return Ok(left);
        };
        let op_pos = self.pos();
        self.bump();
        let right = self.additive()?;
        let e = Expr::Compare {
            op,
            left: Box::new(left),
            right: Box::new(right),
        };
        self.limit_depth(&e, op_pos)?;
        if matches!(self.peek(), Tok::Cmp(_)) {
            return Err(self.err("comparisons cannot be chained; use parentheses"));
        }
        Ok(e)
    }

    fn additive(&mut self) -> PResult<Expr> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => ArithOp::Add,
                Tok::Minus => ArithOp::Sub,
                _ => return Ok(left),
            };
            let op_pos = self.pos();
            self.bump();
            let right = self.multiplicative()?;
            left = Expr::Arith {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
            self.limit_depth(&left, op_pos)?;
        }
    }

    fn multiplicative(&mut self) -> PResult<Expr> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => ArithOp::Mul,
                Tok::Slash => ArithOp::Div,
                _ => return Ok(left),
            };
            let op_pos = self.pos();
            self.bump();
            let right = self.unary()?;
            left = Expr::Arith {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
            self.limit_depth(&left, op_pos)?;
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        if !matches!(self.peek(), Tok::Minus) {
            return self.postfix();
        }
        let minus_pos = self.pos();
        self.bump();
        match self.peek().clone() {
            Tok::Num { text, float } => {
                self.bump();
                let value = number_value(&text, float, true, minus_pos)?;
                Ok(Expr::Literal { value })
            }
            _ => Err(self.err(
                "a `-` sign must be followed by a number; to negate an expression write `0 - x`",
            )),
        }
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let mut e = self.primary()?;
        while matches!(self.peek(), Tok::Dot) {
            let dot_pos = self.pos();
            self.bump();
            let name = self.name("a column name after `.`")?;
            e = Expr::Column {
                input: Box::new(e),
                name,
            };
            self.limit_depth(&e, dot_pos)?;
        }
        Ok(e)
    }

    fn primary(&mut self) -> PResult<Expr> {
        let tok = self.peek().clone();
        let literal = |value| Ok(Expr::Literal { value });
        match tok {
            Tok::Num { text, float } => {
                let v = number_value(&text, float, false, self.pos())?;
                self.bump();
                literal(v)
            }
            Tok::Str(s) => {
                self.bump();
                literal(Value::Str(s))
            }
            Tok::Date(d) => {
                self.bump();
                literal(Value::Date(d))
            }
            Tok::Ptr(id) => {
                self.bump();
                Ok(Expr::Ptr { id })
            }
            Tok::LParen => {
                self.bump();
                let e = self.expr()?;
                self.close_paren()?;
                Ok(e)
            }
            Tok::QIdent(name) => {
                if matches!(self.peek2(), Tok::LParen) {
                    self.call(name, false)
                } else {
                    self.bump();
                    Ok(Expr::Dataset { name })
                }
            }
            Tok::Ident(name) => match name.as_str() {
                "true" | "false" => {
                    self.bump();
                    literal(Value::Bool(name == "true"))
                }
                "null" => {
                    self.bump();
                    literal(Value::Null)
                }
                "and" | "or" | "not" => Err(self.err(format!(
                    "`{name}` can only be used in the condition of `filter(...)`; \
                     to use it as a name write it in backticks"
                ))),
                _ if matches!(self.peek2(), Tok::LParen) => {
                    let builtin = BUILTINS.contains(&name.as_str());
                    self.call(name, builtin)
                }
                _ => {
                    self.bump();
                    Ok(Expr::Dataset { name })
                }
            },
            Tok::LBracket => Err(self.err(
                "a list like `[0, 100, 200]` can only be the edges of `histogram` or the weights of `dot`",
            )),
            other => Err(self.err(format!("expected an expression, found {}", tok_desc(&other)))),
        }
    }

    fn close_paren(&mut self) -> PResult<()> {
        if matches!(self.peek(), Tok::RParen) {
            self.bump();
            Ok(())
        } else {
            Err(self.err("expected `)` to close `(`"))
        }
    }

    /// A column or dataset name (bare or in backticks).
    fn name(&mut self, what: &str) -> PResult<String> {
        match self.peek().clone() {
            Tok::Ident(n) | Tok::QIdent(n) => {
                self.bump();
                Ok(n)
            }
            other => Err(self.err(format!("expected {what}, found {}", tok_desc(&other)))),
        }
    }

    fn comma(&mut self, f: &str, usage: &str) -> PResult<()> {
        match self.peek() {
            Tok::Comma => {
                self.bump();
                Ok(())
            }
            Tok::RParen => Err(self.err(format!("missing argument to `{f}(`; usage: {usage}"))),
            _ => Err(self.err(format!(
                "expected `,` and the next argument of `{f}(`; usage: {usage}"
            ))),
        }
    }

    fn close(&mut self, f: &str, usage: &str) -> PResult<()> {
        match self.peek() {
            Tok::RParen => {
                self.bump();
                Ok(())
            }
            Tok::Comma => Err(self.err(format!("too many arguments to `{f}(`; usage: {usage}"))),
            _ => Err(self.err(format!("expected `)` to close `{f}(`"))),
        }
    }

    /// A call: the current token is the function name and the next one `(`.
    fn call(&mut self, name: String, builtin: bool) -> PResult<Expr> {
        self.bump();
        self.bump();
        if !builtin {
            return self.catalogue(name);
        }
        let f = name.as_str();
        let usage = usage(f);
        let usage = usage.as_str();
        let agg = |kind, input: Expr| Expr::Aggregate {
            kind,
            input: Box::new(input),
        };
        let e = match f {
            "filter" => {
                let input = self.expr()?;
                self.comma(f, usage)?;
                let pred = self.pred()?;
                Expr::Filter {
                    input: Box::new(input),
                    pred,
                }
            }
            "select" => {
                let input = self.expr()?;
                let mut columns = Vec::new();
                while matches!(self.peek(), Tok::Comma) {
                    self.bump();
                    if columns.len() >= MAX_LIST_LEN {
                        return Err(
                            self.err(format!("too many columns (the limit is {MAX_LIST_LEN})"))
                        );
                    }
                    columns.push(self.name("a column name")?);
                }
                Expr::Select {
                    input: Box::new(input),
                    columns,
                }
            }
            "last_months" => {
                let input = self.expr()?;
                self.comma(f, usage)?;
                let months = self.months()?;
                Expr::Filter {
                    input: Box::new(input),
                    pred: Pred::LastMonths {
                        months,
                        column: None,
                    },
                }
            }
            "clamp" => {
                let input = self.expr()?;
                self.comma(f, usage)?;
                let lo = self.number()?;
                self.comma(f, usage)?;
                let hi = self.number()?;
                Expr::Clamp {
                    input: Box::new(input),
                    lo,
                    hi,
                }
            }
            "count" => agg(AggKind::Count, self.expr()?),
            "sum" => agg(AggKind::Sum, self.expr()?),
            "mean" => agg(AggKind::Mean, self.expr()?),
            "variance" => agg(AggKind::Variance, self.expr()?),
            "stdev" => agg(AggKind::Stdev, self.expr()?),
            "min" => agg(AggKind::Min, self.expr()?),
            "max" => agg(AggKind::Max, self.expr()?),
            "median" => Expr::Quantile {
                input: Box::new(self.expr()?),
                q: 0.5,
            },
            "quantile" => {
                let input = self.expr()?;
                self.comma(f, usage)?;
                let q = self.number()?;
                Expr::Quantile {
                    input: Box::new(input),
                    q,
                }
            }
            "histogram" => {
                let input = self.expr()?;
                self.comma(f, usage)?;
                let edges = self.list()?;
                Expr::Histogram {
                    input: Box::new(input),
                    edges,
                }
            }
            "dot" => {
                let input = self.expr()?;
                self.comma(f, usage)?;
                let weights = self.list()?;
                Expr::Dot {
                    input: Box::new(input),
                    weights,
                }
            }
            "by_month" => {
                let kind = self.agg_kind()?;
                self.comma(f, usage)?;
                let input = self.expr()?;
                Expr::ByMonth {
                    kind,
                    input: Box::new(input),
                }
            }
            "by_category" => {
                let kind = self.agg_kind()?;
                self.comma(f, usage)?;
                let input = self.expr()?;
                self.comma(f, usage)?;
                let column = self.name("the name of a category column")?;
                Expr::ByCategory {
                    kind,
                    input: Box::new(input),
                    column,
                }
            }
            "batch" => {
                let mut items = vec![self.expr()?];
                while matches!(self.peek(), Tok::Comma) {
                    self.bump();
                    if items.len() >= crate::expr::MAX_BATCH {
                        return Err(self.err(format!(
                            "too many questions in one batch (the limit is {})",
                            crate::expr::MAX_BATCH
                        )));
                    }
                    items.push(self.expr()?);
                }
                Expr::Batch { items }
            }
            _ => return Err(self.err(format!("unknown function `{f}(`"))),
        };
        self.close(f, usage)?;
        Ok(e)
    }

    fn catalogue(&mut self, name: String) -> PResult<Expr> {
        let window_end = match self.peek() {
            Tok::RParen => None,
            Tok::Date(d) => {
                let d = *d;
                self.bump();
                Some(d)
            }
            _ => {
                let hint = match suggest_builtin(&name) {
                    Some(b) => format!("`{name}(` is not a function; did you mean `{b}(`?"),
                    None => format!(
                        "`{name}` is read as a catalogue attribute, which takes no argument or one date \
                         (the last day of its window): `{name}()` or `{name}(YYYY-MM-DD)`"
                    ),
                };
                return Err(self.err(hint));
            }
        };
        self.close(&name, &usage(&name))?;
        Ok(Expr::Catalogue { name, window_end })
    }

    /// A number written in place (a clamp bound, a quantile, an edge or a weight), as a float.
    fn number(&mut self) -> PResult<f64> {
        let start = self.pos();
        let negative = matches!(self.peek(), Tok::Minus);
        if negative {
            self.bump();
        }
        match self.peek().clone() {
            Tok::Num { text, .. } => {
                self.bump();
                number_f64(&text, negative, start)
            }
            other => Err(self.err(format!("expected a number, found {}", tok_desc(&other)))),
        }
    }

    fn list(&mut self) -> PResult<Vec<f64>> {
        if !matches!(self.peek(), Tok::LBracket) {
            return Err(self.err("expected a list of numbers like `[0, 100, 200]`"));
        }
        self.bump();
        let mut out = Vec::new();
        if matches!(self.peek(), Tok::RBracket) {
            self.bump();
            return Ok(out);
        }
        loop {
            if out.len() >= MAX_LIST_LEN {
                return Err(self.err(format!(
                    "list is too long (the limit is {MAX_LIST_LEN} numbers)"
                )));
            }
            out.push(self.number()?);
            match self.peek() {
                Tok::Comma => self.bump(),
                Tok::RBracket => {
                    self.bump();
                    return Ok(out);
                }
                _ => return Err(self.err("expected `,` or `]` in a list of numbers")),
            }
        }
    }

    fn months(&mut self) -> PResult<u32> {
        match self.peek().clone() {
            Tok::Num { text, float: false } => {
                let pos = self.pos();
                self.bump();
                text.parse::<u32>()
                    .map_err(|_| ParseError::new(pos, "number of months is out of range"))
            }
            _ => Err(self.err("expected a whole number of months")),
        }
    }

    fn agg_kind(&mut self) -> PResult<AggKind> {
        let kind = match self.peek() {
            Tok::Ident(n) => agg_kind_named(n),
            _ => None,
        };
        match kind {
            Some(k) => {
                self.bump();
                Ok(k)
            }
            None => Err(self.err(
                "expected the aggregate to apply per group: one of count, sum, mean, variance, stdev, min, max",
            )),
        }
    }

    // ----- conditions

    fn pred(&mut self) -> PResult<Pred> {
        self.enter()?;
        let r = self.pred_or();
        self.depth -= 1;
        r
    }

    fn is_keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(n) if n == word)
    }

    fn pred_or(&mut self) -> PResult<Pred> {
        let mut left = self.pred_and()?;
        while self.is_keyword("or") {
            let pos = self.pos();
            self.bump();
            let right = self.pred_and()?;
            left = Pred::Or(Box::new(left), Box::new(right));
            self.limit_pred_depth(&left, pos)?;
        }
        Ok(left)
    }

    fn pred_and(&mut self) -> PResult<Pred> {
        let mut left = self.pred_not()?;
        while self.is_keyword("and") {
            let pos = self.pos();
            self.bump();
            let right = self.pred_not()?;
            left = Pred::And(Box::new(left), Box::new(right));
            self.limit_pred_depth(&left, pos)?;
        }
        Ok(left)
    }

    fn pred_not(&mut self) -> PResult<Pred> {
        if !self.is_keyword("not") {
            return self.pred_atom();
        }
        self.bump();
        self.enter()?;
        let inner = self.pred_not();
        self.depth -= 1;
        Ok(Pred::Not(Box::new(inner?)))
    }

    fn pred_atom(&mut self) -> PResult<Pred> {
        if matches!(self.peek(), Tok::LParen) {
            self.bump();
            let p = self.pred()?;
            self.close_paren()?;
            return Ok(p);
        }
        if let (Tok::Ident(f), Tok::LParen) = (self.peek(), self.peek2()) {
            let f = f.clone();
            return match f.as_str() {
                "between" => self.between(),
                "last_months" => self.last_months_pred(),
                _ => Err(self.err(format!(
                    "`{f}(` is not a condition; conditions are comparisons, `between(...)` and \
                     `last_months(...)`, combined with `and`, `or`, `not`"
                ))),
            };
        }
        let (left, left_pos) = self.operand()?;
        let Tok::Cmp(op) = *self.peek() else {
            return Err(self.err("expected a comparison operator: one of ==, !=, <, <=, >, >="));
        };
        self.bump();
        let (right, _) = self.operand()?;
        if matches!(self.peek(), Tok::Cmp(_)) {
            return Err(self.err("comparisons cannot be chained; combine them with `and`"));
        }
        if matches!(self.peek(), Tok::Plus | Tok::Minus | Tok::Star | Tok::Slash) {
            return Err(self.err(
                "a condition compares a column with a column or a single value; \
                 arithmetic is not allowed inside `filter(...)`",
            ));
        }
        match (left, right) {
            (Operand::Column(left), Operand::Column(right)) => {
                Ok(Pred::CompareColumns { left, op, right })
            }
            (Operand::Column(column), Operand::Value(value)) => {
                Ok(Pred::Compare { column, op, value })
            }
            (Operand::Value(value), Operand::Column(column)) => Ok(Pred::Compare {
                column,
                op: flip(op),
                value,
            }),
            (Operand::Value(_), Operand::Value(_)) => Err(ParseError::new(
                left_pos,
                "a condition must name a column of the filtered table; this compares two values",
            )),
        }
    }

    fn operand(&mut self) -> PResult<(Operand, usize)> {
        let pos = self.pos();
        let tok = self.peek().clone();
        let value = |v| Ok((Operand::Value(v), pos));
        match tok {
            Tok::Ident(n) => match n.as_str() {
                "true" | "false" => {
                    self.bump();
                    value(Value::Bool(n == "true"))
                }
                "null" => {
                    self.bump();
                    value(Value::Null)
                }
                "and" | "or" | "not" => {
                    Err(self.err(format!("expected a column name or a value, found `{n}`")))
                }
                _ => {
                    self.bump();
                    if matches!(self.peek(), Tok::Dot) {
                        let col = match self.peek2() {
                            Tok::Ident(c) | Tok::QIdent(c) => c.clone(),
                            _ => "column".into(),
                        };
                        return Err(self.err(format!(
                            "inside a condition, name the columns of the filtered table directly: \
                             write `{col}`, not `{n}.{col}`"
                        )));
                    }
                    Ok((Operand::Column(n), pos))
                }
            },
            Tok::QIdent(n) => {
                self.bump();
                Ok((Operand::Column(n), pos))
            }
            Tok::Num { text, float } => {
                self.bump();
                value(number_value(&text, float, false, pos)?)
            }
            Tok::Minus => {
                self.bump();
                match self.peek().clone() {
                    Tok::Num { text, float } => {
                        self.bump();
                        value(number_value(&text, float, true, pos)?)
                    }
                    _ => Err(self.err("a `-` sign must be followed by a number")),
                }
            }
            Tok::Str(s) => {
                self.bump();
                value(Value::Str(s))
            }
            Tok::Date(d) => {
                self.bump();
                value(Value::Date(d))
            }
            other => Err(self.err(format!(
                "expected a column name or a value, found {}",
                tok_desc(&other)
            ))),
        }
    }

    fn between(&mut self) -> PResult<Pred> {
        self.bump();
        self.bump();
        let usage = "between(COLUMN, FROM_DATE, TO_DATE)";
        let column = self.name("a date column")?;
        self.comma("between", usage)?;
        let from = self.date()?;
        self.comma("between", usage)?;
        let to = self.date()?;
        self.close("between", usage)?;
        Ok(Pred::Between { column, from, to })
    }

    fn last_months_pred(&mut self) -> PResult<Pred> {
        self.bump();
        self.bump();
        let usage = "last_months(MONTHS) or last_months(MONTHS, DATE_COLUMN)";
        let months = self.months()?;
        let column = if matches!(self.peek(), Tok::Comma) {
            self.bump();
            Some(self.name("a date column")?)
        } else {
            None
        };
        self.close("last_months", usage)?;
        Ok(Pred::LastMonths { months, column })
    }

    fn date(&mut self) -> PResult<NaiveDate> {
        match self.peek() {
            Tok::Date(d) => {
                let d = *d;
                self.bump();
                Ok(d)
            }
            _ => Err(self.err("expected a date like 2026-01-31")),
        }
    }
}

fn too_deep() -> String {
    format!("expression nests too deeply (the limit is {MAX_DEPTH} levels)")
}

fn usage(f: &str) -> String {
    match f {
        "filter" => "filter(TABLE, CONDITION)".into(),
        "select" => "select(TABLE, COLUMN, ...)".into(),
        "last_months" => "last_months(TABLE, MONTHS)".into(),
        "clamp" => "clamp(X, LOW, HIGH)".into(),
        "quantile" => "quantile(X, Q)".into(),
        "histogram" => "histogram(X, [EDGE, EDGE, ...])".into(),
        "dot" => "dot(X, [WEIGHT, ...])".into(),
        "by_month" => "by_month(AGGREGATE, X)".into(),
        "by_category" => "by_category(AGGREGATE, X, CATEGORY_COLUMN)".into(),
        "batch" => "batch(QUESTION, QUESTION, ...)".into(),
        "count" | "sum" | "mean" | "variance" | "stdev" | "min" | "max" | "median" => {
            format!("{f}(X)")
        }
        _ => format!("{f}() or {f}(YYYY-MM-DD)"),
    }
}

fn agg_kind_named(name: &str) -> Option<AggKind> {
    Some(match name {
        "count" => AggKind::Count,
        "sum" => AggKind::Sum,
        "mean" => AggKind::Mean,
        "variance" => AggKind::Variance,
        "stdev" => AggKind::Stdev,
        "min" => AggKind::Min,
        "max" => AggKind::Max,
        _ => return None,
    })
}

/// The operator with its sides swapped: `5 < x` is `x > 5`.
fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Eq => CmpOp::Eq,
        CmpOp::Ne => CmpOp::Ne,
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
    }
}

/// A literal number as a value: an integer unless written with `.` or an exponent.
fn number_value(text: &str, float: bool, negative: bool, pos: usize) -> PResult<Value> {
    let signed = if negative {
        format!("-{text}")
    } else {
        text.to_string()
    };
    if float {
        return number_f64(text, negative, pos).map(Value::Float);
    }
    signed.parse::<i64>().map(Value::Int).map_err(|_| {
        ParseError::new(
            pos,
            format!(
                "integer `{signed}` is out of range; write it with an exponent (like `1e19`) \
                 to make it a decimal"
            ),
        )
    })
}

/// A literal number as a float (exactly as Rust reads it, so printed floats read back bit for bit).
fn number_f64(text: &str, negative: bool, pos: usize) -> PResult<f64> {
    let v = text
        .parse::<f64>()
        .map_err(|_| ParseError::new(pos, "malformed number"))?;
    if !v.is_finite() {
        return Err(ParseError::new(pos, "number is too large"));
    }
    Ok(if negative { -v } else { v })
}

fn tok_desc(t: &Tok) -> String {
    match t {
        Tok::Ident(n) | Tok::QIdent(n) => format!("`{n}`"),
        Tok::Num { text, .. } => format!("`{text}`"),
        Tok::Str(_) => "a string".into(),
        Tok::Date(d) => format!("the date `{}`", d.format("%Y-%m-%d")),
        Tok::Ptr(id) => format!("`${id}`"),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Dot => "`.`".into(),
        Tok::Plus => "`+`".into(),
        Tok::Minus => "`-`".into(),
        Tok::Star => "`*`".into(),
        Tok::Slash => "`/`".into(),
        Tok::Cmp(op) => format!("`{}`", cmp_symbol(*op)),
        Tok::Eof => "the end of the input".into(),
        Tok::Error(m) => m.clone(),
    }
}

/// The built-in function closest to `name`, for "did you mean": one edit away (a transposition counts as
/// one), or two for names of five letters or more.
fn suggest_builtin(name: &str) -> Option<&'static str> {
    if name.len() > 32 {
        return None;
    }
    let limit = if name.len() >= 5 { 2 } else { 1 };
    BUILTINS
        .iter()
        .map(|b| (edit_distance(name, b), *b))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, b)| b)
}

/// Optimal string alignment distance (insertions, deletions, substitutions and adjacent transpositions).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    let at = |i: usize, j: usize| i * w + j;
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            let v = if i == 0 {
                j
            } else if j == 0 {
                i
            } else {
                let get = |i, j| d.get(at(i, j)).copied().unwrap_or(usize::MAX - 1);
                let same = a.get(i - 1) == b.get(j - 1);
                let mut v = (get(i - 1, j) + 1)
                    .min(get(i, j - 1) + 1)
                    .min(get(i - 1, j - 1) + usize::from(!same));
                if i > 1 && j > 1 && a.get(i - 1) == b.get(j - 2) && a.get(i - 2) == b.get(j - 1) {
                    v = v.min(get(i - 2, j - 2) + 1);
                }
                v
            };
            if let Some(slot) = d.get_mut(at(i, j)) {
                *slot = v;
            }
        }
    }
    d.last().copied().unwrap_or(0)
}

/// Depth of a lineage tree, counting expression and predicate nodes; iterative, so it is safe on any tree.
fn tree_depth(e: &Expr) -> usize {
    enum Node<'a> {
        E(&'a Expr),
        P(&'a Pred),
    }
    let mut max = 0;
    let mut stack = vec![(Node::E(e), 1usize)];
    while let Some((node, d)) = stack.pop() {
        max = max.max(d);
        match node {
            Node::E(e) => {
                if let Expr::Filter { pred, .. } = e {
                    stack.push((Node::P(pred), d + 1));
                }
                for c in e.children() {
                    stack.push((Node::E(c), d + 1));
                }
            }
            Node::P(p) => match p {
                Pred::And(a, b) | Pred::Or(a, b) => {
                    stack.push((Node::P(a), d + 1));
                    stack.push((Node::P(b), d + 1));
                }
                Pred::Not(a) => stack.push((Node::P(a), d + 1)),
                _ => {}
            },
        }
    }
    max
}

fn pred_depth(p: &Pred) -> usize {
    let mut max = 0;
    let mut stack = vec![(p, 1usize)];
    while let Some((p, d)) = stack.pop() {
        max = max.max(d);
        match p {
            Pred::And(a, b) | Pred::Or(a, b) => {
                stack.push((a, d + 1));
                stack.push((b, d + 1));
            }
            Pred::Not(a) => stack.push((a, d + 1)),
            _ => {}
        }
    }
    max
}

// ---------------------------------------------------------------------------------------------------------
// Printer

/// Print a lineage in the expression syntax.
///
/// The text parses back ([`parse_expr`]) to an equal [`Expr`] whenever the lineage is within the parser's
/// limits, its floats are finite and its dates have four-digit years (anything else is not a valid lineage
/// anyway; non-finite floats print as `nan`, `inf` or `-inf`, which do not parse). Names that are not plain
/// identifiers are printed in backticks; `Quantile { q: 0.5 }` prints as `median(...)`, and a filter on
/// `last_months(N)` alone as `last_months(TABLE, N)`.
///
/// ```
/// use duo_engine::parse::{parse_expr, to_source};
///
/// let src = "mean(clamp(filter(rent, category == \"rent\").amount, 0, 300000))";
/// let e = parse_expr(src).unwrap();
/// assert_eq!(to_source(&e), src);
/// ```
pub fn to_source(expr: &Expr) -> String {
    let mut out = String::new();
    write_expr(&mut out, expr, 0);
    out
}

/// Binding strength of an expression when printed: a child weaker than its context gets parentheses.
fn expr_prec(e: &Expr) -> u8 {
    match e {
        Expr::Compare { .. } => 1,
        Expr::Arith {
            op: ArithOp::Add | ArithOp::Sub,
            ..
        } => 2,
        Expr::Arith { .. } => 3,
        Expr::Literal { .. } => 4,
        _ => 5,
    }
}

fn write_expr(out: &mut String, e: &Expr, min_prec: u8) {
    let paren = expr_prec(e) < min_prec;
    if paren {
        out.push('(');
    }
    match e {
        Expr::Ptr { id } => {
            out.push('$');
            out.push_str(&id.to_string());
        }
        Expr::Dataset { name } => write_name(out, name, false),
        Expr::Select { input, columns } => {
            out.push_str("select(");
            write_expr(out, input, 0);
            for c in columns {
                out.push_str(", ");
                write_name(out, c, false);
            }
            out.push(')');
        }
        Expr::Filter {
            input,
            pred:
                Pred::LastMonths {
                    months,
                    column: None,
                },
        } => {
            out.push_str("last_months(");
            write_expr(out, input, 0);
            out.push_str(&format!(", {months})"));
        }
        Expr::Filter { input, pred } => {
            out.push_str("filter(");
            write_expr(out, input, 0);
            out.push_str(", ");
            write_pred(out, pred, 0);
            out.push(')');
        }
        Expr::Column { input, name } => {
            write_expr(out, input, 5);
            out.push('.');
            write_name(out, name, false);
        }
        Expr::Clamp { input, lo, hi } => {
            out.push_str("clamp(");
            write_expr(out, input, 0);
            out.push_str(&format!(", {}, {})", fmt_number(*lo), fmt_number(*hi)));
        }
        Expr::Arith { op, left, right } => {
            let p = expr_prec(e);
            write_expr(out, left, p);
            out.push_str(match op {
                ArithOp::Add => " + ",
                ArithOp::Sub => " - ",
                ArithOp::Mul => " * ",
                ArithOp::Div => " / ",
            });
            write_expr(out, right, p + 1);
        }
        Expr::Compare { op, left, right } => {
            write_expr(out, left, 2);
            out.push(' ');
            out.push_str(cmp_symbol(*op));
            out.push(' ');
            write_expr(out, right, 2);
        }
        Expr::Literal { value } => write_value(out, value),
        Expr::Aggregate { kind, input } => {
            out.push_str(kind.name());
            out.push('(');
            write_expr(out, input, 0);
            out.push(')');
        }
        Expr::Quantile { input, q } => {
            if *q == 0.5 {
                out.push_str("median(");
                write_expr(out, input, 0);
                out.push(')');
            } else {
                out.push_str("quantile(");
                write_expr(out, input, 0);
                out.push_str(&format!(", {})", fmt_number(*q)));
            }
        }
        Expr::Histogram { input, edges } => {
            out.push_str("histogram(");
            write_expr(out, input, 0);
            out.push_str(", ");
            write_list(out, edges);
            out.push(')');
        }
        Expr::ByMonth { kind, input } => {
            out.push_str("by_month(");
            out.push_str(kind.name());
            out.push_str(", ");
            write_expr(out, input, 0);
            out.push(')');
        }
        Expr::ByCategory {
            kind,
            input,
            column,
        } => {
            out.push_str("by_category(");
            out.push_str(kind.name());
            out.push_str(", ");
            write_expr(out, input, 0);
            out.push_str(", ");
            write_name(out, column, false);
            out.push(')');
        }
        Expr::Dot { input, weights } => {
            out.push_str("dot(");
            write_expr(out, input, 0);
            out.push_str(", ");
            write_list(out, weights);
            out.push(')');
        }
        Expr::Catalogue { name, window_end } => {
            write_name(out, name, true);
            out.push('(');
            if let Some(d) = window_end {
                out.push_str(&d.format("%Y-%m-%d").to_string());
            }
            out.push(')');
        }
        Expr::Batch { items } => {
            out.push_str("batch(");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_expr(out, item, 0);
            }
            out.push(')');
        }
    }
    if paren {
        out.push(')');
    }
}

/// Binding strength of a condition when printed.
fn pred_prec(p: &Pred) -> u8 {
    match p {
        Pred::Or(..) => 1,
        Pred::And(..) => 2,
        _ => 3,
    }
}

fn write_pred(out: &mut String, p: &Pred, min_prec: u8) {
    let paren = pred_prec(p) < min_prec;
    if paren {
        out.push('(');
    }
    match p {
        Pred::Compare { column, op, value } => {
            write_name(out, column, false);
            out.push(' ');
            out.push_str(cmp_symbol(*op));
            out.push(' ');
            write_value(out, value);
        }
        Pred::CompareColumns { left, op, right } => {
            write_name(out, left, false);
            out.push(' ');
            out.push_str(cmp_symbol(*op));
            out.push(' ');
            write_name(out, right, false);
        }
        Pred::Between { column, from, to } => {
            out.push_str("between(");
            write_name(out, column, false);
            out.push_str(&format!(
                ", {}, {})",
                from.format("%Y-%m-%d"),
                to.format("%Y-%m-%d")
            ));
        }
        Pred::LastMonths { months, column } => {
            out.push_str(&format!("last_months({months}"));
            if let Some(c) = column {
                out.push_str(", ");
                write_name(out, c, false);
            }
            out.push(')');
        }
        Pred::And(a, b) => {
            write_pred(out, a, 2);
            out.push_str(" and ");
            write_pred(out, b, 3);
        }
        Pred::Or(a, b) => {
            write_pred(out, a, 1);
            out.push_str(" or ");
            write_pred(out, b, 2);
        }
        Pred::Not(a) => {
            out.push_str("not ");
            write_pred(out, a, 3);
        }
    }
    if paren {
        out.push(')');
    }
}

/// The symbol of a comparison operator in the syntax.
pub fn cmp_symbol(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    }
}

fn is_plain_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(is_ident_start) && bytes.all(is_ident_char)
}

/// A name, in backticks when it is not a plain identifier, is a reserved word, or (for a catalogue
/// attribute) would be read as a built-in function.
fn write_name(out: &mut String, name: &str, callable: bool) {
    let plain =
        is_plain_name(name) && !RESERVED.contains(&name) && !(callable && BUILTINS.contains(&name));
    if plain {
        out.push_str(name);
    } else {
        write_quoted(out, name, '`');
    }
}

fn write_quoted(out: &mut String, s: &str, quote: char) {
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if crate::text::is_hidden(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push(quote);
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) if f.is_finite() => out.push_str(&format!("{f:?}")),
        Value::Float(f) => out.push_str(&fmt_number(*f)),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Date(d) => out.push_str(&d.format("%Y-%m-%d").to_string()),
        Value::Str(s) => write_quoted(out, s, '"'),
    }
}

fn write_list(out: &mut String, xs: &[f64]) {
    out.push('[');
    for (i, x) in xs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&fmt_number(*x));
    }
    out.push(']');
}

/// A float field (clamp bound, quantile, edge, weight): whole numbers without a fraction (`300000`), others
/// in the shortest form that reads back exactly.
fn fmt_number(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else if v == v.trunc() && v.abs() < 1e16 {
        format!("{v}")
    } else {
        format!("{v:?}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A batch's source text round-trips, reads back as one batch of its questions, and is described one
    /// question after another.
    #[test]
    fn batches_parse_print_and_describe() {
        let src = "batch(count(rent), mean(clamp(rent.amount, 0, 300000)))";
        let e = parse_expr(src).unwrap();
        let Expr::Batch { items } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(parse_expr(&to_source(&e)).unwrap(), e);
        assert_eq!(
            crate::render::describe(&e),
            format!(
                "2 questions asked together: (1) {}; (2) {}",
                crate::render::describe(&items[0]),
                crate::render::describe(&items[1])
            )
        );
        let many = format!("batch({})", vec!["count(rent)"; 33].join(", "));
        assert!(parse_expr(&many)
            .unwrap_err()
            .to_string()
            .contains("limit is 32"));
        assert!(parse_expr("batch()").is_err());
    }

    fn ds(name: &str) -> Expr {
        Expr::Dataset { name: name.into() }
    }
    fn col(input: Expr, name: &str) -> Expr {
        Expr::Column {
            input: Box::new(input),
            name: name.into(),
        }
    }
    fn lit(value: Value) -> Expr {
        Expr::Literal { value }
    }
    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }
    fn p(src: &str) -> Expr {
        match parse_expr(src) {
            Ok(e) => e,
            Err(e) => panic!("{src:?} failed:\n{}", e.render(src)),
        }
    }
    fn perr(src: &str) -> ParseError {
        match parse_expr(src) {
            Ok(e) => panic!("{src:?} parsed to {e:?}"),
            Err(e) => e,
        }
    }
    fn filt(input: Expr, pred: Pred) -> Expr {
        Expr::Filter {
            input: Box::new(input),
            pred,
        }
    }
    fn cmp(column: &str, op: CmpOp, value: Value) -> Pred {
        Pred::Compare {
            column: column.into(),
            op,
            value,
        }
    }
    fn pred_of(src: &str) -> Pred {
        match p(&format!("filter(t, {src})")) {
            Expr::Filter { pred, .. } => pred,
            other => panic!("not a filter: {other:?}"),
        }
    }

    #[test]
    fn paths() {
        assert_eq!(p("rent"), ds("rent"));
        assert_eq!(p("rent.amount"), col(ds("rent"), "amount"));
        assert_eq!(p("  rent . amount  "), col(ds("rent"), "amount"));
        assert_eq!(
            p("filter(rent, amount > 5).amount"),
            col(
                filt(ds("rent"), cmp("amount", CmpOp::Gt, Value::Int(5))),
                "amount"
            )
        );
        assert_eq!(p("$7"), Expr::Ptr { id: 7 });
        assert_eq!(p("$7.amount"), col(Expr::Ptr { id: 7 }, "amount"));
        assert_eq!(p("`my data`.`due date`"), col(ds("my data"), "due date"));
        assert_eq!(p("`not`"), ds("not"));
        // A function name without `(` is just a name.
        assert_eq!(p("filter.count"), col(ds("filter"), "count"));
    }

    #[test]
    fn literals() {
        assert_eq!(p("12"), lit(Value::Int(12)));
        assert_eq!(p("-3"), lit(Value::Int(-3)));
        assert_eq!(p("- 3"), lit(Value::Int(-3)));
        assert_eq!(p("0.5"), lit(Value::Float(0.5)));
        assert_eq!(p("1e3"), lit(Value::Float(1000.0)));
        assert_eq!(p("2.5E-2"), lit(Value::Float(0.025)));
        assert_eq!(p("-9223372036854775808"), lit(Value::Int(i64::MIN)));
        assert_eq!(p("\"rent\""), lit(Value::Str("rent".into())));
        assert_eq!(
            p(r#""a \"q\" \\ \n \t \u{1F600}""#),
            lit(Value::Str("a \"q\" \\ \n \t \u{1F600}".into()))
        );
        assert_eq!(p("2026-01-31"), lit(Value::Date(date(2026, 1, 31))));
        assert_eq!(p("2024-02-29"), lit(Value::Date(date(2024, 2, 29))));
        assert_eq!(p("true"), lit(Value::Bool(true)));
        assert_eq!(p("false"), lit(Value::Bool(false)));
        assert_eq!(p("null"), lit(Value::Null));
    }

    #[test]
    fn arithmetic_precedence_and_associativity() {
        let a = || col(ds("t"), "a");
        let b = || col(ds("t"), "b");
        let ar = |op, l, r| Expr::Arith {
            op,
            left: Box::new(l),
            right: Box::new(r),
        };
        assert_eq!(
            p("t.a + t.b * 2"),
            ar(ArithOp::Add, a(), ar(ArithOp::Mul, b(), lit(Value::Int(2))))
        );
        assert_eq!(
            p("(t.a + t.b) * 2"),
            ar(ArithOp::Mul, ar(ArithOp::Add, a(), b()), lit(Value::Int(2)))
        );
        assert_eq!(
            p("t.a - t.b - 1"),
            ar(ArithOp::Sub, ar(ArithOp::Sub, a(), b()), lit(Value::Int(1)))
        );
        assert_eq!(
            p("t.a / t.b / 2"),
            ar(ArithOp::Div, ar(ArithOp::Div, a(), b()), lit(Value::Int(2)))
        );
        assert_eq!(p("t.a - -1"), ar(ArithOp::Sub, a(), lit(Value::Int(-1))));
        assert_eq!(
            p("t.a * -1.5"),
            ar(ArithOp::Mul, a(), lit(Value::Float(-1.5)))
        );
        assert_eq!(
            p("rent.paid_date - rent.due_date"),
            ar(
                ArithOp::Sub,
                col(ds("rent"), "paid_date"),
                col(ds("rent"), "due_date")
            )
        );
        assert_eq!(
            p("rent.due_date - 2026-01-31"),
            ar(
                ArithOp::Sub,
                col(ds("rent"), "due_date"),
                lit(Value::Date(date(2026, 1, 31)))
            )
        );
        assert_eq!(
            p("2026 - 1 - 31"),
            ar(
                ArithOp::Sub,
                ar(ArithOp::Sub, lit(Value::Int(2026)), lit(Value::Int(1))),
                lit(Value::Int(31))
            )
        );
    }

    #[test]
    fn comparisons() {
        let e = p("mean(rent.paid_date <= rent.due_date)");
        assert_eq!(
            e,
            Expr::Aggregate {
                kind: AggKind::Mean,
                input: Box::new(Expr::Compare {
                    op: CmpOp::Le,
                    left: Box::new(col(ds("rent"), "paid_date")),
                    right: Box::new(col(ds("rent"), "due_date")),
                }),
            }
        );
        // Arithmetic binds tighter than comparison.
        let e = p("t.a + 1 > t.b");
        assert!(matches!(e, Expr::Compare { op: CmpOp::Gt, ref left, .. }
            if matches!(**left, Expr::Arith { op: ArithOp::Add, .. })));
        for (src, op) in [
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<", CmpOp::Lt),
            ("<=", CmpOp::Le),
            (">", CmpOp::Gt),
            (">=", CmpOp::Ge),
        ] {
            assert!(
                matches!(p(&format!("t.a {src} 1")), Expr::Compare { op: o, .. } if o == op),
                "{src}"
            );
        }
        // Parenthesised comparisons may be compared.
        assert!(matches!(
            p("(t.a < 1) == true"),
            Expr::Compare { op: CmpOp::Eq, .. }
        ));
    }

    #[test]
    fn functions() {
        let amount = || col(ds("rent"), "amount");
        assert_eq!(
            p("select(rent, amount, due_date)"),
            Expr::Select {
                input: Box::new(ds("rent")),
                columns: vec!["amount".into(), "due_date".into()]
            }
        );
        assert_eq!(
            p("clamp(rent.amount, 0, 300000)"),
            Expr::Clamp {
                input: Box::new(amount()),
                lo: 0.0,
                hi: 300000.0
            }
        );
        assert_eq!(
            p("clamp(rent.amount, -1.5, 2e5)"),
            Expr::Clamp {
                input: Box::new(amount()),
                lo: -1.5,
                hi: 200000.0
            }
        );
        for (name, kind) in [
            ("count", AggKind::Count),
            ("sum", AggKind::Sum),
            ("mean", AggKind::Mean),
            ("variance", AggKind::Variance),
            ("stdev", AggKind::Stdev),
            ("min", AggKind::Min),
            ("max", AggKind::Max),
        ] {
            assert_eq!(
                p(&format!("{name}(rent.amount)")),
                Expr::Aggregate {
                    kind,
                    input: Box::new(amount())
                }
            );
            assert_eq!(
                p(&format!("by_month({name}, rent.amount)")),
                Expr::ByMonth {
                    kind,
                    input: Box::new(amount())
                }
            );
            assert_eq!(
                p(&format!("by_category({name}, rent.amount, `kind of`)")),
                Expr::ByCategory {
                    kind,
                    input: Box::new(amount()),
                    column: "kind of".into()
                }
            );
        }
        assert_eq!(
            p("median(rent.amount)"),
            Expr::Quantile {
                input: Box::new(amount()),
                q: 0.5
            }
        );
        assert_eq!(
            p("quantile(rent.amount, 0.9)"),
            Expr::Quantile {
                input: Box::new(amount()),
                q: 0.9
            }
        );
        assert_eq!(
            p("histogram(rent.amount, [0, 100, 200.5])"),
            Expr::Histogram {
                input: Box::new(amount()),
                edges: vec![0.0, 100.0, 200.5]
            }
        );
        assert_eq!(
            p("dot(by_month(sum, rent.amount), [1, -0.5])"),
            Expr::Dot {
                input: Box::new(Expr::ByMonth {
                    kind: AggKind::Sum,
                    input: Box::new(amount())
                }),
                weights: vec![1.0, -0.5]
            }
        );
        assert_eq!(
            p("dot($3, [])"),
            Expr::Dot {
                input: Box::new(Expr::Ptr { id: 3 }),
                weights: vec![]
            }
        );
        assert_eq!(
            p("last_months(rent, 12)"),
            filt(
                ds("rent"),
                Pred::LastMonths {
                    months: 12,
                    column: None
                }
            )
        );
        assert_eq!(
            p(r#"by_month(sum, filter(transactions, category == "income").amount)"#),
            Expr::ByMonth {
                kind: AggKind::Sum,
                input: Box::new(col(
                    filt(
                        ds("transactions"),
                        cmp("category", CmpOp::Eq, Value::Str("income".into()))
                    ),
                    "amount"
                ))
            }
        );
    }

    #[test]
    fn catalogue() {
        assert_eq!(
            p("rent_on_time_ratio_12m()"),
            Expr::Catalogue {
                name: "rent_on_time_ratio_12m".into(),
                window_end: None
            }
        );
        assert_eq!(
            p("rent_on_time_ratio_12m(2026-06-30)"),
            Expr::Catalogue {
                name: "rent_on_time_ratio_12m".into(),
                window_end: Some(date(2026, 6, 30))
            }
        );
        // Not validated by the parser.
        assert_eq!(
            p("no_such_thing()"),
            Expr::Catalogue {
                name: "no_such_thing".into(),
                window_end: None
            }
        );
        assert_eq!(
            p("`count`()"),
            Expr::Catalogue {
                name: "count".into(),
                window_end: None
            }
        );
    }

    #[test]
    fn conditions() {
        assert_eq!(
            pred_of(r#"category == "rent""#),
            cmp("category", CmpOp::Eq, Value::Str("rent".into()))
        );
        assert_eq!(
            pred_of("amount > -10000"),
            cmp("amount", CmpOp::Gt, Value::Int(-10000))
        );
        // A value on the left flips the operator.
        assert_eq!(
            pred_of("5 < amount"),
            cmp("amount", CmpOp::Gt, Value::Int(5))
        );
        assert_eq!(
            pred_of("5 >= amount"),
            cmp("amount", CmpOp::Le, Value::Int(5))
        );
        assert_eq!(
            pred_of("5 == amount"),
            cmp("amount", CmpOp::Eq, Value::Int(5))
        );
        assert_eq!(
            pred_of("paid_date != null"),
            cmp("paid_date", CmpOp::Ne, Value::Null)
        );
        assert_eq!(
            pred_of("date >= 2026-01-01"),
            cmp("date", CmpOp::Ge, Value::Date(date(2026, 1, 1)))
        );
        assert_eq!(
            pred_of("paid_date <= due_date"),
            Pred::CompareColumns {
                left: "paid_date".into(),
                op: CmpOp::Le,
                right: "due_date".into()
            }
        );
        assert_eq!(
            pred_of("between(due_date, 2025-11-01, 2026-10-31)"),
            Pred::Between {
                column: "due_date".into(),
                from: date(2025, 11, 1),
                to: date(2026, 10, 31)
            }
        );
        assert_eq!(
            pred_of("last_months(12)"),
            Pred::LastMonths {
                months: 12,
                column: None
            }
        );
        assert_eq!(
            pred_of("last_months(3, paid_date)"),
            Pred::LastMonths {
                months: 3,
                column: Some("paid_date".into())
            }
        );
        // A column may be called `between` when it is not followed by `(`.
        assert_eq!(
            pred_of("between == 1"),
            cmp("between", CmpOp::Eq, Value::Int(1))
        );
    }

    #[test]
    fn condition_connectives() {
        let a = || cmp("a", CmpOp::Eq, Value::Int(1));
        let b = || cmp("b", CmpOp::Eq, Value::Int(2));
        let c = || cmp("c", CmpOp::Eq, Value::Int(3));
        let and = |x, y| Pred::And(Box::new(x), Box::new(y));
        let or = |x, y| Pred::Or(Box::new(x), Box::new(y));
        let not = |x| Pred::Not(Box::new(x));
        assert_eq!(
            pred_of("a == 1 or b == 2 and c == 3"),
            or(a(), and(b(), c()))
        );
        assert_eq!(
            pred_of("a == 1 and b == 2 or c == 3"),
            or(and(a(), b()), c())
        );
        assert_eq!(
            pred_of("(a == 1 or b == 2) and c == 3"),
            and(or(a(), b()), c())
        );
        assert_eq!(
            pred_of("a == 1 and b == 2 and c == 3"),
            and(and(a(), b()), c())
        );
        assert_eq!(pred_of("not a == 1 and b == 2"), and(not(a()), b()));
        assert_eq!(pred_of("not (a == 1 and b == 2)"), not(and(a(), b())));
        assert_eq!(pred_of("not not a == 1"), not(not(a())));
    }

    fn assert_err(src: &str, pos: usize, needle: &str) {
        let e = perr(src);
        assert_eq!(e.pos, pos, "{src:?}: {}", e.render(src));
        assert!(
            e.message.contains(needle),
            "{src:?}: message {:?} lacks {needle:?}",
            e.message
        );
    }

    #[test]
    fn errors_have_positions() {
        assert_err("", 0, "expected an expression");
        assert_err(
            "mean(clamp(rent.amount, 0, 300000)",
            34,
            "expected `)` to close `mean(`",
        );
        assert_err("mean(rent.amount, 1)", 16, "too many arguments to `mean(`");
        assert_err("clamp(rent.amount, 0)", 20, "missing argument to `clamp(`");
        assert_err("clamp(rent.amount, 0 1)", 21, "expected `,`");
        assert_err("clamp(rent.amount, lo, 1)", 19, "expected a number");
        assert_err("(rent", 5, "expected `)` to close `(`");
        assert_err("rent rent", 5, "unexpected `rent`");
        assert_err("rent.", 5, "expected a column name");
        assert_err("rent.amount = 3", 12, "use `==`");
        assert_err("rent.amount ! 3", 12, "`!` must be followed by `=`");
        assert_err("t.a < t.b < t.c", 10, "cannot be chained");
        assert_err("-t.a", 1, "must be followed by a number");
        assert_err("rent.amount + #", 14, "unexpected character '#'");
        assert_err("\"abc", 0, "unterminated string");
        assert_err("`abc", 0, "unterminated name");
        assert_err(r#""a\qb""#, 2, "unknown escape");
        assert_err(r#""\u{110000}""#, 1, "malformed escape");
        assert_err("$", 0, "expected a pointer number");
        assert_err("$99999999999999999999", 0, "out of range");
        assert_err("99999999999999999999", 0, "out of range");
        assert_err("1e999", 0, "too large");
        assert_err("3abc", 1, "unexpected character after a number");
        assert_err("1e", 1, "malformed exponent");
        assert_err("[1, 2]", 0, "can only be the edges");
        assert_err("histogram(t.a, [1, 2)", 20, "expected `,` or `]`");
        assert_err("histogram(t.a, 1)", 15, "expected a list");
        assert_err("by_month(median, t.a)", 9, "one of count, sum");
        assert_err(
            "by_category(sum, t.a)",
            20,
            "missing argument to `by_category(`",
        );
        assert_err(
            "by_category(sum, t.a, \"c\")",
            22,
            "expected the name of a category column",
        );
        assert_err("by_category(sum, t.a, c, d)", 23, "too many arguments");
        assert_err("and", 0, "can only be used in the condition");
        assert_err("rent_score(rent)", 11, "read as a catalogue attribute");
        assert_err("foo(rent)", 4, "read as a catalogue attribute");
        assert_err("mena(rent.amount)", 5, "did you mean `mean(`");
        assert_err("histgram(rent.amount)", 9, "did you mean `histogram(`");
        assert_err("maen(rent.amount)", 5, "did you mean `mean(`");
        assert_err("foo(2026-01-31, 2026-02-28)", 14, "too many arguments");
        assert_err("quantile(t.a)", 12, "missing argument");
        assert_err("last_months(rent)", 16, "missing argument");
        assert_err("last_months(rent, 1.5)", 18, "whole number of months");
        assert_err("last_months(rent, -1)", 18, "whole number of months");
    }

    #[test]
    fn date_errors() {
        assert_err("2026-02-30", 0, "invalid date `2026-02-30`");
        assert_err("t.d < 2025-13-01", 6, "invalid date");
        assert_err("filter(t, d < 2026-04-31)", 14, "no such day");
        assert_err("2026-1-5", 0, "dates are written YYYY-MM-DD");
        assert_err("filter(t, d == 26-01-05)", 15, "YYYY-MM-DD");
        assert_err("2026-01-31x", 10, "after a date");
    }

    #[test]
    fn condition_errors() {
        assert_err(
            "filter(rent, rent.amount > 1)",
            17,
            "write `amount`, not `rent.amount`",
        );
        assert_err("filter(rent, amount)", 19, "expected a comparison operator");
        assert_err("filter(rent, 1 < 2)", 13, "must name a column");
        assert_err("filter(rent, a < b < c)", 19, "combine them with `and`");
        assert_err(
            "filter(rent, a == 1 and)",
            23,
            "expected a column name or a value",
        );
        assert_err("filter(rent, foo(1))", 13, "is not a condition");
        assert_err(
            "filter(rent, between(d, 2026-01-01))",
            34,
            "missing argument to `between(`",
        );
        assert_err(
            "filter(rent, between(d, 1, 2026-01-01))",
            24,
            "expected a date",
        );
        assert_err("filter(rent, last_months(x))", 25, "whole number of months");
        assert_err(
            "filter(rent, (a == 1)",
            21,
            "expected `)` to close `filter(`",
        );
        assert_err(
            "filter(rent, (a == 1 b == 2))",
            21,
            "expected `)` to close `(`",
        );
        assert_err(
            "filter(rent, a == $1)",
            18,
            "expected a column name or a value",
        );
        assert_err("filter(rent)", 11, "missing argument to `filter(`");
        assert_err(
            "filter(rent, amount > 1 + 2)",
            24,
            "arithmetic is not allowed",
        );
    }

    #[test]
    fn module_doc_examples_parse() {
        for src in [
            "mean(clamp(filter(rent, category == \"rent\").amount, 0, 300000))",
            "by_month(sum, filter(transactions, category == \"income\").amount)",
            "by_category(sum, clamp(transactions.amount, -500000, 0), category)",
            "mean(last_months(rent, 12).paid_date <= last_months(rent, 12).due_date)",
            "histogram(filter(transactions, amount < 0 and not category == \"transfer\").amount, \
             [-100000, -10000, 0])",
            "rent_on_time_ratio_12m()",
            "rent_on_time_ratio_12m(2026-06-30)",
            "count(filter(rent, between(due_date, 2025-11-01, 2026-10-31) and paid_date > due_date))",
            "count(filter(rent, 10000 < amount or last_months(12, paid_date)))",
            "select(rent, amount, due_date)",
            "dot(by_month(mean, rent.amount), [0.5, 1, 2])",
        ] {
            let e = p(src);
            assert_eq!(parse_expr(&to_source(&e)), Ok(e), "{src}");
        }
    }

    #[test]
    fn lexical_errors_come_in_source_order() {
        // The syntax error at byte 5 comes before the bad character at byte 8.
        assert_err("mean(, #)", 5, "expected an expression");
        // A bad character where a token is expected is reported as itself.
        assert_err("mean(#)", 5, "unexpected character '#'");
    }

    #[test]
    fn render_points_at_the_error() {
        let src = "mean(clamp(rent.amount, 0, 300000)";
        let e = perr(src);
        assert_eq!(
            e.render(src),
            format!("{src}\n{}^ expected `)` to close `mean(`", " ".repeat(34))
        );
        let src = "count(rent)\n  + foo(rent)";
        let e = perr(src);
        assert_eq!(e.pos, 20);
        assert_eq!(
            e.render(src),
            "line 2, column 9:\n  + foo(rent)\n        ^ ".to_string() + &e.message
        );
        // Out-of-range and mid-character positions do not panic.
        let odd = ParseError::new(1000, "x");
        assert_eq!(odd.render("ab"), "ab\n  ^ x");
        let odd = ParseError::new(1, "x");
        assert_eq!(odd.render("é"), "é\n^ x");
        assert_eq!(ParseError::new(3, "boom").to_string(), "boom (at byte 3)");
    }

    #[test]
    fn limits() {
        let long = "a".repeat(MAX_SOURCE_LEN + 1);
        assert_err(&long, MAX_SOURCE_LEN, "too long");
        // Within the length limit, nesting is capped.
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert_err(&deep, 64, "nests too deeply");
        let ok = format!("{}1{}", "(".repeat(60), ")".repeat(60));
        assert_eq!(p(&ok), lit(Value::Int(1)));
        let chain = vec!["1"; 200].join(" + ");
        assert!(perr(&chain).message.contains("nests too deeply"));
        let chain = vec!["1"; 60].join(" + ");
        assert!(parse_expr(&chain).is_ok());
        let dots = format!("t{}", ".a".repeat(500));
        assert!(perr(&dots).message.contains("nests too deeply"));
        let nots = format!("filter(t, {}a == 1)", "not ".repeat(500));
        assert!(perr(&nots).message.contains("nests too deeply"));
        let ands = format!("filter(t, {})", vec!["a == 1"; 500].join(" and "));
        assert!(perr(&ands).message.contains("nests too deeply"));
        let means = format!("{}t{}", "mean(".repeat(200), ")".repeat(200));
        assert!(perr(&means).message.contains("nests too deeply"));
        let parens = format!("filter(t, {}a == 1{})", "(".repeat(200), ")".repeat(200));
        assert!(perr(&parens).message.contains("nests too deeply"));
        // Lists.
        let list = |n: usize| format!("dot($1, [{}])", vec!["1"; n].join(","));
        assert!(parse_expr(&list(MAX_LIST_LEN)).is_ok());
        let e = perr(&list(MAX_LIST_LEN + 1));
        assert!(e.message.contains("too long"));
        assert_eq!(e.pos, "dot($1, [".len() + 2 * MAX_LIST_LEN);
        let cols = format!("select(t{})", ",a".repeat(MAX_LIST_LEN + 1));
        assert!(perr(&cols).message.contains("too many columns"));
    }

    #[test]
    fn printer_examples() {
        for src in [
            "rent",
            "rent.amount",
            "$7.amount",
            "mean(clamp(filter(rent, category == \"rent\").amount, 0, 300000))",
            "by_month(sum, filter(transactions, category == \"income\").amount)",
            "by_category(mean, transactions.amount, category)",
            "by_category(count, rent.amount, `the kind`)",
            "mean(rent.paid_date <= rent.due_date)",
            "rent_on_time_ratio_12m()",
            "rent_on_time_ratio_12m(2026-06-30)",
            "last_months(rent, 12)",
            "filter(rent, last_months(3, paid_date))",
            "filter(t, between(d, 2025-11-01, 2026-10-31) and (a == 1 or not b < -2.5))",
            "histogram(t.a, [0, 100, 200.5])",
            "dot(by_month(mean, t.a), [0.5, 1, 1e-7])",
            "median(t.a)",
            "quantile(t.a, 0.9)",
            "select(t, a, `b c`)",
            "(t.a - t.b) * 2 - (t.c - -1)",
            "(3).x",
            "`count`()",
            "`and`.`or`",
            "1.0 + 1e20",
        ] {
            assert_eq!(to_source(&p(src)), src, "{src}");
        }
        assert_eq!(fmt_number(300000.0), "300000");
        assert_eq!(fmt_number(-0.0), "-0");
        assert_eq!(fmt_number(0.1), "0.1");
        assert_eq!(fmt_number(1e20), "1e20");
        assert_eq!(
            to_source(&lit(Value::Str("a\"b\\c\n\u{1}".into()))),
            r#""a\"b\\c\n\u{1}""#
        );
    }

    #[test]
    fn printer_round_trips_awkward_values() {
        for e in [
            lit(Value::Int(i64::MIN)),
            lit(Value::Int(i64::MAX)),
            lit(Value::Float(-0.0)),
            lit(Value::Float(f64::MIN_POSITIVE)),
            lit(Value::Float(5e-324)),
            lit(Value::Float(f64::MAX)),
            lit(Value::Float(123.0)),
            col(lit(Value::Int(-3)), "x"),
            col(lit(Value::Date(date(2026, 1, 31))), "x"),
            Expr::Clamp {
                input: Box::new(ds("t")),
                lo: -1e300,
                hi: 12345678901234567890.0,
            },
            ds(""),
            ds("with`tick"),
            Expr::Compare {
                op: CmpOp::Lt,
                left: Box::new(Expr::Compare {
                    op: CmpOp::Lt,
                    left: Box::new(lit(Value::Int(1))),
                    right: Box::new(lit(Value::Int(2))),
                }),
                right: Box::new(lit(Value::Bool(true))),
            },
            filt(
                ds("t"),
                Pred::And(
                    Box::new(cmp("a", CmpOp::Eq, Value::Int(1))),
                    Box::new(Pred::And(
                        Box::new(cmp("b", CmpOp::Eq, Value::Int(1))),
                        Box::new(cmp("c", CmpOp::Eq, Value::Int(1))),
                    )),
                ),
            ),
        ] {
            let src = to_source(&e);
            assert_eq!(parse_expr(&src), Ok(e.clone()), "{src}");
        }
        assert_eq!(
            to_source(&lit(Value::Float(-0.0))),
            "-0.0",
            "negative zero keeps its sign"
        );
    }

    // ----- property tests

    fn arb_name() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "rent", "amount", "due_date", "x_1", "filter", "count", "between", "not", "true",
            "my col", "a`b", "", "_",
        ])
        .prop_map(String::from)
    }

    fn arb_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<i32>().prop_map(f64::from),
            prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
            Just(0.5),
        ]
    }

    fn arb_date() -> impl Strategy<Value = NaiveDate> {
        (0i64..80_000).prop_map(|d| date(1900, 1, 1) + chrono::Duration::days(d))
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Int),
            arb_f64().prop_map(Value::Float),
            any::<bool>().prop_map(Value::Bool),
            arb_date().prop_map(Value::Date),
            any::<String>().prop_map(Value::Str),
        ]
    }

    fn arb_cmp() -> impl Strategy<Value = CmpOp> {
        prop::sample::select(vec![
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ])
    }

    fn arb_agg() -> impl Strategy<Value = AggKind> {
        prop::sample::select(vec![
            AggKind::Count,
            AggKind::Sum,
            AggKind::Mean,
            AggKind::Variance,
            AggKind::Min,
            AggKind::Max,
        ])
    }

    fn arb_pred() -> impl Strategy<Value = Pred> {
        let leaf =
            prop_oneof![
                (arb_name(), arb_cmp(), arb_value())
                    .prop_map(|(column, op, value)| Pred::Compare { column, op, value }),
                (arb_name(), arb_cmp(), arb_name())
                    .prop_map(|(left, op, right)| Pred::CompareColumns { left, op, right }),
                (arb_name(), arb_date(), arb_date()).prop_map(|(column, from, to)| Pred::Between {
                    column,
                    from,
                    to
                }),
                (any::<u32>(), prop::option::of(arb_name()))
                    .prop_map(|(months, column)| Pred::LastMonths { months, column }),
            ];
        leaf.prop_recursive(4, 16, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Pred::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Pred::Or(Box::new(a), Box::new(b))),
                inner.prop_map(|a| Pred::Not(Box::new(a))),
            ]
        })
    }

    /// Random well-formed lineages (also used by the renderer's tests).
    pub(crate) fn arb_expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            any::<u64>().prop_map(|id| Expr::Ptr { id }),
            arb_name().prop_map(|name| Expr::Dataset { name }),
            arb_value().prop_map(|value| Expr::Literal { value }),
            (arb_name(), prop::option::of(arb_date()))
                .prop_map(|(name, window_end)| Expr::Catalogue { name, window_end }),
        ];
        leaf.prop_recursive(5, 48, 2, |inner| {
            let arith =
                prop::sample::select(vec![ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div]);
            prop_oneof![
                (inner.clone(), prop::collection::vec(arb_name(), 0..3)).prop_map(
                    |(i, columns)| Expr::Select {
                        input: Box::new(i),
                        columns
                    }
                ),
                (inner.clone(), arb_pred()).prop_map(|(i, pred)| Expr::Filter {
                    input: Box::new(i),
                    pred
                }),
                (inner.clone(), arb_name()).prop_map(|(i, name)| Expr::Column {
                    input: Box::new(i),
                    name
                }),
                (inner.clone(), arb_f64(), arb_f64()).prop_map(|(i, lo, hi)| Expr::Clamp {
                    input: Box::new(i),
                    lo,
                    hi
                }),
                (arith, inner.clone(), inner.clone()).prop_map(|(op, l, r)| Expr::Arith {
                    op,
                    left: Box::new(l),
                    right: Box::new(r)
                }),
                (arb_cmp(), inner.clone(), inner.clone()).prop_map(|(op, l, r)| Expr::Compare {
                    op,
                    left: Box::new(l),
                    right: Box::new(r)
                }),
                (arb_agg(), inner.clone()).prop_map(|(kind, i)| Expr::Aggregate {
                    kind,
                    input: Box::new(i)
                }),
                (inner.clone(), arb_f64()).prop_map(|(i, q)| Expr::Quantile {
                    input: Box::new(i),
                    q
                }),
                (inner.clone(), prop::collection::vec(arb_f64(), 0..4)).prop_map(|(i, edges)| {
                    Expr::Histogram {
                        input: Box::new(i),
                        edges,
                    }
                }),
                (arb_agg(), inner.clone()).prop_map(|(kind, i)| Expr::ByMonth {
                    kind,
                    input: Box::new(i)
                }),
                (arb_agg(), inner.clone(), arb_name()).prop_map(|(kind, i, column)| {
                    Expr::ByCategory {
                        kind,
                        input: Box::new(i),
                        column,
                    }
                }),
                (inner, prop::collection::vec(arb_f64(), 0..4)).prop_map(|(i, weights)| {
                    Expr::Dot {
                        input: Box::new(i),
                        weights,
                    }
                }),
            ]
        })
    }

    /// Text that looks a bit like the syntax, to reach deeper into the parser than random strings do.
    fn arb_sourceish() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "(",
                ")",
                "[",
                "]",
                ",",
                ".",
                "-",
                "+",
                "*",
                "/",
                "==",
                "<=",
                "!",
                "=",
                "$",
                "$7",
                "\"",
                "\"s\"",
                "`",
                "\\",
                "rent",
                "amount",
                "filter",
                "mean",
                "clamp",
                "by_month",
                "by_category",
                "sum",
                "last_months",
                "between",
                "histogram",
                "dot",
                "select",
                "not",
                "and",
                "or",
                "null",
                "1",
                "0.5",
                "1e3",
                "2026-01-31",
                "2026-02-30",
                "2026-1",
                " ",
                "\n",
                "é",
                "foo",
            ]),
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn round_trip(e in arb_expr()) {
            let src = to_source(&e);
            let back = parse_expr(&src);
            prop_assert_eq!(back, Ok(e), "source: {}", src);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            if let Err(e) = parse_expr(&s) {
                prop_assert!(e.pos <= s.len());
                let _ = e.render(&s);
            }
        }

        #[test]
        fn sourceish_strings_never_panic(s in arb_sourceish()) {
            match parse_expr(&s) {
                // Whatever parses prints back to text that parses to the same tree.
                Ok(e) => prop_assert_eq!(parse_expr(&to_source(&e)), Ok(e)),
                Err(e) => {
                    prop_assert!(e.pos <= s.len());
                    let _ = e.render(&s);
                }
            }
        }

        #[test]
        fn mangled_sources_never_panic(e in arb_expr(), cut in any::<prop::sample::Index>(), junk in "[()\\[\\],.\"`$a-z0-9 -]{0,3}") {
            let src = to_source(&e);
            let mut at = cut.index(src.len() + 1);
            while !src.is_char_boundary(at) {
                at -= 1;
            }
            let mangled = format!("{}{}{}", &src[..at], junk, &src[at..]);
            if let Err(err) = parse_expr(&mangled) {
                prop_assert!(err.pos <= mangled.len());
            }
        }

        #[test]
        fn deep_nesting_is_an_error(open in prop::sample::select(vec!["(", "mean(", "filter(t, not ", "[", "-", "not "]), n in 65usize..5000) {
            let src = open.repeat(n);
            prop_assert!(parse_expr(&src).is_err());
        }
    }
}
