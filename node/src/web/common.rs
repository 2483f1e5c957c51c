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
