//! What the owner's and the FI's screens share: rendering a template, showing text that came from elsewhere,
//! and the compiled-in script and style sheet.

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// A rendered template as an HTML response.
pub(crate) fn html<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(body) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("template: {e}")).into_response(),
    }
}

/// Text that came from the other side or the records, safe to show: invisible and reordering characters made
/// visible, line by line (askama escapes HTML).
pub(crate) fn shown(text: &str) -> String {
    text.lines()
        .map(duo_engine::text::neutralize)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The owner UI's script.
pub(crate) async fn script() -> Response {
    js(include_str!("assets/app.js"))
}

/// The FI UI's script.
pub(crate) async fn fi_script() -> Response {
    js(include_str!("assets/fi.js"))
}

fn js(body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The style sheet both UIs use.
pub(crate) async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/style.css"),
    )
        .into_response()
}

/// One line of the command line's wording of a request, as a term and its value.
pub(crate) struct Fact {
    pub(crate) label: String,
    pub(crate) value: String,
}

/// The command line's wording of a request as terms and values: its first line (which request, its state) is
/// the card's heading on a page, and its hints at commands are the page's buttons.
pub(crate) fn facts(words: &str) -> Vec<Fact> {
    let mut facts: Vec<Fact> = Vec::new();
    for line in words.lines().skip(1) {
        let trimmed = line.trim_start();
        if trimmed.starts_with("approve: duo ")
            || trimmed.starts_with("deny:") && trimmed.contains("duo owner deny")
        {
            continue;
        }
        let indent = line.len() - trimmed.len();
        match trimmed.split_once(": ") {
            Some((label, value)) if indent == 2 && !label.is_empty() => {
                let mut chars = label.chars();
                let first = chars.next().map(|c| c.to_uppercase().to_string());
                facts.push(Fact {
                    label: first.unwrap_or_default() + chars.as_str(),
                    value: shown(value.trim()),
                });
            }
            _ => match facts.last_mut() {
                Some(last) => {
                    last.value.push('\n');
                    last.value.push_str(&shown(trimmed));
                }
                None => facts.push(Fact {
                    label: String::new(),
                    value: shown(trimmed),
                }),
            },
        }
    }
    facts
}

/// An RFC 3339 time (as the store and the FI home keep them) as a date and time a person reads; the text
/// itself when it is not one.
pub(crate) fn when(ts: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| t.format("%-d %B %Y, %H:%M UTC").to_string())
        .unwrap_or_else(|_| ts.to_string())
}

/// Whether a form's CSRF token is this launch's; the refusal's words otherwise.
pub(crate) fn csrf_refusal(keys: &super::guard::Keys, token: &str) -> Option<&'static str> {
    (!super::guard::same(token, &keys.csrf))
        .then_some("this form is out of date (the UI was restarted?): open the page again")
}

/// The HTTP status of a page that failed with `e`: not found, a refusal or conflict (409), an owner node that
/// could not be reached (502), else 500.
pub(crate) fn error_status(e: &crate::error::Error) -> StatusCode {
    use crate::error::Error;
    match e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Refused(_) | Error::Stale { .. } | Error::Limit(_) | Error::Remote { .. } => {
            StatusCode::CONFLICT
        }
        Error::Transport(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
