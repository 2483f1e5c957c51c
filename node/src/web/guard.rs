//! Who may use the UI, checked on every request before any page runs: the Host allowlist (DNS rebinding), the
//! per-launch secret or the cookie it was exchanged for, the origin of state-changing requests and of the event
//! stream, and the security headers on every response (errors included).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The Content-Security-Policy of every response: nothing but this origin's own files, no inline script or
/// style, no framing, forms posting only here.
pub(crate) const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The per-launch values: the secret in the printed address, the cookie it is exchanged for, the CSRF token
/// forms carry, and the host names the UI answers to.
pub(crate) struct Keys {
    /// In the printed address (`?k=`).
    pub(crate) secret: String,
    /// The cookie's value.
    session: String,
    /// The cookie's name: per port, as browsers share cookies between ports of one host.
    pub(crate) cookie_name: String,
    /// The hidden field of every form.
    pub(crate) csrf: String,
    /// `127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`.
    hosts: [String; 3],
    /// Whose UI: `owner` or `fi` (the command that prints its address is `duo WHO ui`).
    who: &'static str,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Equal, in time independent of where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Keys {
    /// Fresh values for `who`'s UI (`owner` or `fi`) on `port`.
    pub(crate) fn generate(port: u16, who: &'static str) -> Keys {
        Keys {
            who,
            secret: random_hex(),
            session: random_hex(),
            cookie_name: format!("duo_{who}_{port}"),
            csrf: random_hex(),
            hosts: [
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ],
        }
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| self.hosts.iter().any(|a| a.eq_ignore_ascii_case(h)))
    }

    /// `Sec-Fetch-Site`, if sent, is `same-origin`; the `Origin`, if sent, is `http://` and an allowed host, or
    /// `null` alongside `Sec-Fetch-Site: same-origin` (with `Referrer-Policy: no-referrer` a browser sends
    /// `Origin: null` on its own forms' POSTs, and `Sec-Fetch-Site` is a header no page can set). With
    /// `required`, a browser request must show one of them (a page's POST always sends `Origin`).
    fn same_origin(&self, headers: &HeaderMap, required: bool) -> bool {
        let origin = headers
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or(""));
        let site = headers
            .get("sec-fetch-site")
            .map(|s| s.to_str().unwrap_or(""));
        let site_ok = site.is_none_or(|s| s == "same-origin");
        let origin_ok = origin.is_none_or(|o| {
            (o == "null" && site == Some("same-origin"))
                || o.strip_prefix("http://")
                    .is_some_and(|h| self.hosts.iter().any(|a| a.eq_ignore_ascii_case(h)))
        });
        origin_ok && site_ok && (!required || origin.is_some() || site.is_some())
    }

    fn has_cookie(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(name, value)| name == self.cookie_name && same(value, &self.session))
    }

    /// The `k` query parameter, if it is the secret.
    fn secret_in(&self, query: Option<&str>) -> bool {
        query
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
            .any(|(k, v)| k == "k" && same(v, &self.secret))
    }
}

fn refuse(status: StatusCode, what: &str) -> Response {
    let mut r = (status, format!("{what}\n")).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The checks, in order: Host (403), the secret or the cookie (401; a valid secret sets the cookie and
/// redirects to the same page without it), then the origin of a state-changing request or of the event stream
/// (403).
pub(crate) async fn check(
    State(keys): State<Arc<Keys>>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let headers = req.headers();
    if !keys.host_allowed(headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "forbidden: this address is not the Duo UI (open the address `duo {} ui` prints)",
                keys.who
            ),
        );
    }
    if keys.secret_in(req.uri().query()) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SEE_OTHER;
        let path = req.uri().path();
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            keys.cookie_name, keys.session
        );
        if let (Ok(loc), Ok(c)) = (
            HeaderValue::from_str(if path.starts_with('/') { path } else { "/" }),
            HeaderValue::from_str(&cookie),
        ) {
            r.headers_mut().insert(header::LOCATION, loc);
            r.headers_mut().insert(header::SET_COOKIE, c);
        }
        return r;
    }
    if !keys.has_cookie(headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            &format!(
                "not signed in: open the address `duo {} ui` prints (it holds this launch's secret)",
                keys.who
            ),
        );
    }
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD);
    let stream = req.uri().path() == "/events";
    if (changes_state || stream) && !keys.same_origin(headers, changes_state) {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden: this request did not come from the Duo UI's own pages",
        );
    }
    next.run(req).await
}

/// The headers every response carries; no CORS header is ever set.
pub(crate) async fn headers(req: Request<Body>, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    r
}
